"""The starting encoder of a phase and its tokenizer: pretrained, a previous phase's,
or a tiny random one; which of its parts stay frozen; a fingerprint of its weights."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizerFast,
)

from xstilts.config import ModelConfig, TinyModelConfig
from xstilts.errors import XstiltsError
from xstilts.io import reading_back
from xstilts.model_store import model_location
from xstilts.modeling import deltas

ENCODER_DIR = "encoder"


def tiny_tokenizer_path(tiny: TinyModelConfig) -> Path:
    if tiny.tokenizer is not None:
        if not tiny.tokenizer.is_file():
            raise XstiltsError(f"model.tiny.tokenizer: no file at {tiny.tokenizer}")
        return tiny.tokenizer
    shipped = resources.files("xstilts.resources") / "tiny-tokenizer.json"
    with resources.as_file(shipped) as path:
        return Path(path)


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of the base model; every later phase saves and shares it."""
    if model.tiny is not None:
        return XLMRobertaTokenizerFast(tokenizer_file=str(tiny_tokenizer_path(model.tiny)))
    try:
        # fix_mistral_regex=False: transformers 4.57 warns about Mistral's regex for any
        # local folder whose config lacks an old transformers_version; it changes nothing.
        return AutoTokenizer.from_pretrained(
            model_location(model.name, with_tokenizer=True),
            revision=model.revision,
            fix_mistral_regex=False,
        )
    except OSError as err:
        raise XstiltsError(
            f"model.name: cannot load a tokenizer for '{model.name}' ({err})"
        ) from None


def build_encoder(
    model: ModelConfig, tokenizer: PreTrainedTokenizerBase, init_from: Path | None = None
) -> PreTrainedModel:
    """The starting encoder (a previous phase's, a pretrained one, or a tiny random one),
    with the parts the config keeps fixed frozen. A previous phase's is its delta on the
    pretrained encoder (modeling/deltas.py), or a whole model saved before deltas.
    Input embeddings that train keep a copy of the pretrained matrix to save their
    changed rows against (taken before a delta is applied)."""
    if init_from is not None and (init_from / ENCODER_DIR).is_dir():
        with reading_back(init_from / ENCODER_DIR):
            encoder = _pretrained_encoder(str(init_from / ENCODER_DIR), None)
        names = {name for name, _ in encoder.named_parameters()}
        deltas.mark(encoder, pretrained_fingerprint(model, tokenizer), names)
    else:
        encoder = _original_encoder(model, tokenizer)
        fingerprint = pretrained_fingerprint(model, tokenizer, encoder)
        if not model.freeze_embeddings:  # its delta keeps only the rows that change
            deltas.keep_embedding_reference(encoder)
        changed: set[str] = set()
        if init_from is not None:
            changed = deltas.apply_delta(encoder, init_from, fingerprint, model.display_name)
        deltas.mark(encoder, fingerprint, changed)
    freeze(encoder, embeddings=model.freeze_embeddings, layers=model.freeze_layers)
    return encoder


def _original_encoder(model: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The pretrained encoder (or the tiny random one) as the config names it."""
    if model.tiny is not None:
        return _tiny_encoder(model.tiny, tokenizer)
    try:
        return _pretrained_encoder(model_location(model.name), model.revision)
    except OSError as err:
        raise XstiltsError(f"model.name: cannot load encoder '{model.name}' ({err})") from None


_FINGERPRINTS: dict[str, str] = {}
"""Pretrained fingerprints already computed in this process, by model identity."""


def pretrained_fingerprint(
    model: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    original: PreTrainedModel | None = None,
) -> str:
    """sha256 of the pretrained encoder's weights (``original``, if already built)."""
    key = model.model_dump_json(include={"name", "revision", "tiny"})
    if key not in _FINGERPRINTS:
        encoder = original if original is not None else _original_encoder(model, tokenizer)
        _FINGERPRINTS[key] = weights_fingerprint(encoder)
    return _FINGERPRINTS[key]


def freeze(encoder: PreTrainedModel, *, embeddings: bool, layers: int) -> None:
    """Stop gradients to the embedding layer and/or the lowest ``layers`` layers."""
    parts: list[nn.Module] = []
    if embeddings:
        embedding_layer = getattr(encoder, "embeddings", None)
        parts.append(
            embedding_layer
            if isinstance(embedding_layer, nn.Module)
            else encoder.get_input_embeddings()
        )
    if layers:
        stack = _layer_stack(encoder)
        if layers > len(stack):
            raise XstiltsError(
                f"model.freeze_layers: {layers}, but the encoder has {len(stack)} layers"
            )
        parts.extend(stack[:layers])
    for part in parts:
        part.requires_grad_(False)


def _layer_stack(encoder: PreTrainedModel) -> nn.ModuleList:
    """The encoder's list of transformer layers (``encoder.layer`` for BERT and XLM-R)."""
    count = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise XstiltsError(
        f"model.freeze_layers: cannot find the layer stack of {type(encoder).__name__}"
    )


def _pretrained_encoder(name: str, revision: str | None) -> PreTrainedModel:
    # Heads are ours: skip the pooler where the architecture has that option.
    try:
        return AutoModel.from_pretrained(name, revision=revision, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_pretrained(name, revision=revision)


def tiny_encoder_config(
    tiny: TinyModelConfig, vocab_size: int, **token_ids: int | None
) -> XLMRobertaConfig:
    """The XLM-R config of ``model.tiny`` (``token_ids``: pad, bos and eos ids)."""
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=tiny.hidden_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        intermediate_size=tiny.intermediate_size,
        max_position_embeddings=tiny.max_positions,
        type_vocab_size=1,
        **token_ids,
    )


def _tiny_encoder(tiny: TinyModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    config = tiny_encoder_config(
        tiny,
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # The same "pretrained" weights for every run, without touching the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.init_seed)
        return XLMRobertaModel(config, add_pooling_layer=False)


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over every tensor of ``module``'s state (names, dtypes, shapes and bytes), so
    a saved adapter can check that it is put back on the very weights it was trained on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
