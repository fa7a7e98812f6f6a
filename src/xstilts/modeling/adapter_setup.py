"""Adapters on the shared encoder, built on AdapterHub's ``adapters`` library.

A phase's model is its starting encoder plus adapters: some restored from earlier
phases (language adapters, intermediate task adapters), some new. ``AdapterSetup``
describes them; ``attach_adapters`` adds them, decides what trains, and returns the
``AdapterRoutes``: which composition is active for each head, with the language
adapter (MAD-X) stacked underneath. Swapping that language is all zero-shot
evaluation has to do.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adapters
import torch
from adapters import AdapterFusionConfig, Fuse, Stack
from adapters.configuration.adapter_config import ADAPTER_CONFIG_MAP, BnConfig
from adapters.configuration.adapter_fusion_config import ADAPTERFUSION_CONFIG_MAP
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel

from xstilts.errors import XstiltsError
from xstilts.io import reading_back
from xstilts.modeling import deltas

TRAINED_FILE = "trained.safetensors"
"""The encoder parameters a phase trained (adapters, fusion layers, and any encoder
parts trained beside them), by name."""

ADAPTER_KINDS = sorted(ADAPTER_CONFIG_MAP)
FUSION_KINDS = sorted(ADAPTERFUSION_CONFIG_MAP)
# The library folds these into the encoder's weights (merge_adapter).
MERGEABLE_KINDS = ("ia3", "lora")


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, **({"options": self.options} if self.options else {})}


@dataclass(frozen=True)
class Restored:
    """Adapters trained by an earlier phase, restored from its saved trained state."""

    source: Path
    adapters: tuple[AdapterSpec, ...]


@dataclass
class AdapterSetup:
    """The adapters of one phase's model and what of them trains."""

    restored: list[Restored] = field(default_factory=list)
    new: list[AdapterSpec] = field(default_factory=list)
    head_adapters: dict[str, str | None] = field(default_factory=dict)
    """Head -> the task adapter active for it (None: only the language adapter)."""
    fusion: tuple[list[str], str, dict[str, Any]] | None = None
    """Adapters fused for every head, the fusion config and its options."""
    trained: list[str] = field(default_factory=list)
    """Adapters whose weights train (new ones, or a restored one trained further)."""
    train_fused_adapters: bool = False
    train_encoder: bool = False
    also_train: tuple[str, ...] = ()
    merge: str | None = None
    """A restored LoRA / IA3 adapter folded into the encoder, after which every adapter
    goes and the encoder trains in full."""
    language_adapters: dict[str, str] = field(default_factory=dict)
    """Language -> its adapter's name, for the languages that have one."""
    training_language: str | None = None
    """The language whose adapter sits under the task adapters while training."""

    def summary(self) -> dict[str, Any]:
        """What results.json records of the setup."""
        kinds = {spec.name: spec.summary() for spec in self.new}
        return {
            "new": kinds,
            "restored": sorted(spec.name for r in self.restored for spec in r.adapters),
            "trained": sorted(self.trained) + (["fusion"] if self.fusion else []),
            "fusion": self.fusion[0] if self.fusion else None,
            "merged": self.merge,
            "encoder": "trained" if self.train_encoder else "frozen",
            "also_train": list(self.also_train),
        }


@dataclass
class AdapterRoutes:
    """Which adapter composition a forward pass through a head uses."""

    heads: dict[str, Any]
    language: str | None = None
    _active: Any = None

    def activate(self, encoder: PreTrainedModel, head: str) -> None:
        parts = [part for part in (self.language, self.heads[head]) if part is not None]
        if not parts:
            raise XstiltsError(f"head '{head}' has no adapter to run through")
        composition = parts[0] if len(parts) == 1 else Stack(*parts)
        if composition != self._active:
            encoder.set_active_adapters(composition)
            self._active = composition


# ---------------------------------------------------------------------------
# Checking options before any work


def library_config(kind: str, options: dict[str, Any], key: str) -> Any:
    """The library's config object for ``kind`` with ``options``, or one clear error
    that names the key and lists what is allowed."""
    if kind not in ADAPTER_CONFIG_MAP:
        raise XstiltsError(
            f"{key}.kind: '{kind}' is not an adapter kind of the adapters library; "
            f"allowed: {', '.join(ADAPTER_KINDS)}"
        )
    return _with_options(ADAPTER_CONFIG_MAP[kind], options, f"{key}.options", f"'{kind}'")


def fusion_config(kind: str, options: dict[str, Any], key: str) -> Any:
    if kind not in ADAPTERFUSION_CONFIG_MAP:
        raise XstiltsError(
            f"{key}.kind: '{kind}' is not an AdapterFusion config; allowed: "
            f"{', '.join(FUSION_KINDS)}"
        )
    return _with_options(
        ADAPTERFUSION_CONFIG_MAP[kind], options, f"{key}.options", f"fusion '{kind}'"
    )


def check_fusable(kind: str, options: dict[str, Any], key: str) -> None:
    if not isinstance(library_config(kind, options, key), BnConfig):
        raise XstiltsError(
            f"{key}.kind: AdapterFusion fuses bottleneck adapters (seq_bn, double_seq_bn, "
            f"par_bn, ...), not '{kind}'"
        )


def check_mergeable(kind: str, key: str) -> None:
    if kind not in MERGEABLE_KINDS:
        raise XstiltsError(
            f"{key}.kind: start 'merge' folds a {' or '.join(MERGEABLE_KINDS)} adapter into "
            f"the encoder, not '{kind}'"
        )


def _with_options(base: Any, options: dict[str, Any], key: str, what: str) -> Any:
    if not dataclasses.is_dataclass(base):  # a union of configs (mam, unipelt)
        if options:
            raise XstiltsError(f"{key}: {what} combines several configs and takes no options")
        return base
    allowed = sorted(f.name for f in dataclasses.fields(base))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise XstiltsError(
            f"{key}: {', '.join(unknown)} is not an option of {what}; its options: "
            f"{', '.join(allowed)}"
        )
    try:
        return base.replace(**options)
    except (TypeError, ValueError) as err:
        raise XstiltsError(f"{key}: {what} rejects these options ({err})") from None


# ---------------------------------------------------------------------------
# Building a phase's model


def attach_adapters(
    encoder: PreTrainedModel, setup: AdapterSetup, heads: list[str]
) -> AdapterRoutes | None:
    """Add the setup's adapters to ``encoder`` (in place) and mark what trains. Returns
    the routes, or None when the phase ends up training a plain encoder (merge)."""
    with _quiet_library():
        return _attach(encoder, setup, heads)


@contextmanager
def _quiet_library() -> Iterator[None]:
    """While adapters are being set up, the library warns that none is active for
    the forward pass (of an internal reset, not of any real forward pass)."""
    library_log = logging.getLogger("adapters.model_mixin")
    level = library_log.level
    library_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        library_log.setLevel(level)


def _attach(
    encoder: PreTrainedModel, setup: AdapterSetup, heads: list[str]
) -> AdapterRoutes | None:
    base_trainable = {name: p.requires_grad for name, p in encoder.named_parameters()}
    adapters.init(encoder)
    for restored in setup.restored:
        for spec in restored.adapters:
            _add(encoder, spec, str(restored.source))
        load_trained(encoder, restored.source)
    for spec in setup.new:
        _add(encoder, spec, spec.name)
    if setup.merge is not None:
        encoder.merge_adapter(setup.merge)
        for name in list(encoder.adapters_config.adapters):
            encoder.delete_adapter(name)
        _restore_trainable(encoder, base_trainable)
        deltas.mark_all_changed(encoder)  # frozen weights took the merged adapter too
        return None

    fused = None
    if setup.fusion is not None:
        names, kind, options = setup.fusion
        fused = Fuse(*names)
        encoder.add_adapter_fusion(fused, config=AdapterFusionConfig.load(kind, **options))
        encoder.train_adapter_fusion(fused, unfreeze_adapters=setup.train_fused_adapters)
    elif setup.trained:
        encoder.train_adapter(Stack(*setup.trained) if len(setup.trained) > 1 else setup.trained[0])
    else:
        encoder.freeze_model(True)
    if setup.train_encoder:
        _restore_trainable(encoder, base_trainable)
    _also_train(encoder, setup.also_train, base_trainable)

    language = setup.language_adapters.get(setup.training_language or "")
    routes = {head: fused if fused is not None else setup.head_adapters.get(head) for head in heads}
    return AdapterRoutes(routes, language)


def _add(encoder: PreTrainedModel, spec: AdapterSpec, where: str) -> None:
    config = library_config(spec.kind, spec.options, "adapters")
    try:
        encoder.add_adapter(spec.name, config=config)
    except (ValueError, TypeError, AssertionError, RuntimeError) as err:
        raise XstiltsError(
            f"adapter '{spec.name}' ({where}): the adapters library cannot add a "
            f"'{spec.kind}' adapter with options {spec.options} to "
            f"{type(encoder).__name__} ({err})"
        ) from None


def _restore_trainable(encoder: PreTrainedModel, base_trainable: dict[str, bool]) -> None:
    """Base weights train again as they did before adapters came (frozen parts stay)."""
    for name, parameter in encoder.named_parameters():
        if name in base_trainable:
            parameter.requires_grad_(base_trainable[name])


def _also_train(encoder: PreTrainedModel, parts: tuple[str, ...], base: dict[str, bool]) -> None:
    for name, parameter in encoder.named_parameters():
        if name not in base:
            continue
        if "layer_norms" in parts and _is_layer_norm(name):
            parameter.requires_grad_(True)
    if "embeddings" in parts:
        encoder.get_input_embeddings().requires_grad_(True)


def _is_layer_norm(name: str) -> bool:
    return "LayerNorm" in name or "layer_norm" in name


# ---------------------------------------------------------------------------
# Trained state


def trained_encoder_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder parameters that train in this phase, by name."""
    return {
        name: parameter.detach().contiguous().cpu()
        for name, parameter in encoder.named_parameters()
        if parameter.requires_grad
    }


def load_trained(encoder: nn.Module, source: Path) -> None:
    """Put a phase's trained encoder parameters (``source/trained.safetensors``) back."""
    path = source / TRAINED_FILE
    with reading_back(path):
        state = load_file(str(path))
    unexpected = encoder.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise XstiltsError(
            f"{path}: holds {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}, "
            "which this model does not have; it was saved by a different adapter setup"
        )


def use_language(routes: AdapterRoutes | None, setup: AdapterSetup, lang: str, fallback: str):
    """Put ``lang``'s language adapter under the task adapters; return the language
    whose adapter is used (``fallback``'s when ``lang`` has none, None for none)."""
    if routes is None or not setup.language_adapters:
        return None
    used = lang if lang in setup.language_adapters else (fallback if fallback != "none" else None)
    routes.language = setup.language_adapters.get(used) if used is not None else None
    return used
