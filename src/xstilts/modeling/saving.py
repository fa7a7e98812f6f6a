"""Saving and loading a phase's best model.

Without adapters, ``best/`` holds the encoder as what differs from the pretrained one
(``trained.safetensors``, ``base.json`` with the pretrained model's name, revision and
sha256: see modeling/deltas.py) plus the heads; a ``best/encoder`` folder (the whole
model in the Hugging Face layout, written before deltas) still loads. With adapters
it holds only what the phase trained: ``trained.safetensors`` (adapters, fusion layers
and any encoder parts trained beside them), the heads, ``base.json`` naming the frozen
base it belongs on (model, revision, sha256 of its weights), and an ``adapterhub/``
copy of each trained adapter for use with the adapters library alone. The tokenizer
is never copied: it is the pretrained model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from xstilts.errors import XstiltsError
from xstilts.io import atomic_dir, atomic_write_json, read_json, reading_back
from xstilts.modeling.adapter_setup import (
    TRAINED_FILE,
    AdapterSetup,
    load_trained,
    trained_encoder_state,
)
from xstilts.modeling.deltas import BASE_FILE, ENCODER_LAYOUT, changed_state, pretrained_sha256
from xstilts.modeling.multitask import MultiTaskModel

HEADS_FILE = "heads.safetensors"
HEADS_INDEX = "heads.json"
ADAPTERHUB_DIR = "adapterhub"


def save_model(model: MultiTaskModel, target: Path) -> None:
    """Write the phase's model to ``target`` atomically (layout: see the module doc)."""
    with atomic_dir(target) as scratch:
        if model.adapters is None:
            save_file(changed_state(model.encoder), str(scratch / TRAINED_FILE))
            atomic_write_json(scratch / BASE_FILE, _delta_base(model))
        else:
            save_file(trained_encoder_state(model.encoder), str(scratch / TRAINED_FILE))
            atomic_write_json(scratch / BASE_FILE, {**(model.base or {}), "layout": "adapters"})
            _export_adapters(model, scratch / ADAPTERHUB_DIR)
        tied = _tied_head_keys(model)
        heads = {
            k: v.detach().contiguous().cpu()
            for k, v in model.heads.state_dict().items()
            if k not in tied
        }
        save_file(heads, str(scratch / HEADS_FILE))
        atomic_write_json(scratch / HEADS_INDEX, {"heads": sorted(model.heads)})


def _delta_base(model: MultiTaskModel) -> dict[str, Any]:
    """``base.json`` of a delta: what it starts from, and the pretrained fingerprint."""
    fingerprint = pretrained_sha256(model.encoder)
    if fingerprint is None:
        raise XstiltsError("save_model: the encoder was not built by build_encoder")
    return {**(model.base or {}), "layout": ENCODER_LAYOUT, "pretrained_sha256": fingerprint}


def load_trained_model(model: MultiTaskModel, source: Path) -> None:
    """Load a saved adapter phase's best model into ``model``, built the way the phase
    built it: heads, and its trained parts, after checking the base is the same."""
    if (source / TRAINED_FILE).is_file():
        check_base(model, source / BASE_FILE)
        load_trained(model.encoder, source)
    load_heads(model, source)


def check_base(model: MultiTaskModel, path: Path) -> None:
    with reading_back(path):
        saved: dict[str, Any] = read_json(path)
    current = model.base or {}
    if saved.get("sha256") != current.get("sha256"):
        raise XstiltsError(
            f"{path}: these adapters were trained on {_describe(saved)}, but the model "
            f"rebuilt for them is {_describe(current)}; its weights differ"
        )


def _describe(base: dict[str, Any]) -> str:
    where = base.get("start") or base.get("model") or "an unknown base"
    return f"{where} (sha256 {str(base.get('sha256'))[:12]})"


def load_heads(model: MultiTaskModel, source: Path) -> None:
    """Load saved head weights; heads of other tasks saved alongside are ignored."""
    with reading_back(source / HEADS_FILE):
        state = load_file(str(source / HEADS_FILE))
    missing, _unexpected = model.heads.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in _tied_head_keys(model)]
    if missing:
        raise XstiltsError(f"{source / HEADS_FILE}: no weights for {', '.join(missing)}")


def load_head_as(model: MultiTaskModel, source: Path, saved: str, head: str) -> None:
    """Start ``model``'s head ``head`` from the head saved as ``saved`` in ``source`` (a
    stage handing its head on, as XTREME starts COPA from the SIQA model)."""
    with reading_back(source / HEADS_FILE):
        state = load_file(str(source / HEADS_FILE))
    prefix = f"{saved}."
    weights = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    if not weights:
        raise XstiltsError(f"{source / HEADS_FILE}: no head '{saved}' to start '{head}' from")
    try:
        model.heads[head].load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise XstiltsError(
            f"{source / HEADS_FILE}: head '{saved}' does not fit head '{head}' ({first})"
        ) from None


def _export_adapters(model: MultiTaskModel, folder: Path) -> None:
    """Each trained adapter (and fusion layer) in the adapters library's own layout."""
    setup = model.adapters
    assert setup is not None
    folder.mkdir()
    # Exported configs record config.name_or_path: the model's name, not its install path.
    config = model.encoder.config
    installed, config._name_or_path = config._name_or_path, (model.base or {}).get("model", "")
    try:
        _export_each(model, setup, folder)
    finally:
        config._name_or_path = installed


def _export_each(model: MultiTaskModel, setup: AdapterSetup, folder: Path) -> None:
    for name in setup.trained:
        try:
            model.encoder.save_adapter(str(folder / name), name, use_safetensors=True)
        except RuntimeError:
            # The library's safetensors export refuses prefix tuning's shared prefix
            # pool; its own default format (a torch .bin) takes it.
            model.encoder.save_adapter(str(folder / name), name)
    if setup.fusion is not None:
        names = setup.fusion[0]
        model.encoder.save_adapter_fusion(
            str(folder / ",".join(names)), names, use_safetensors=True
        )


def _tied_head_keys(model: MultiTaskModel) -> set[str]:
    """Head state keys whose tensor is the encoder's (an MLM decoder tied to the input
    embeddings) or an earlier head key's (a shared bias): saved once, elsewhere."""
    seen = {id(t) for t in model.encoder.state_dict(keep_vars=True).values()}
    tied: set[str] = set()
    for key, tensor in model.heads.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(key)
        seen.add(id(tensor))
    return tied
