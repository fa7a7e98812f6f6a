"""A phase's encoder stored as what differs from the pretrained one.

A phase without adapters saves, in ``best/trained.safetensors``, every encoder
parameter that differs from the pretrained model: the ones it trained, and the ones
the phase it started from had changed (a target started from an intermediate
``best/`` holds both, so it never needs that folder again). Frozen embeddings and
layers are not copied. ``base.json`` names the pretrained model (``model``,
``revision``: also where the tokenizer comes from, which is not copied) and records
``pretrained_sha256``, the fingerprint of its weights; loading rebuilds the
pretrained encoder, checks that fingerprint, and puts the saved parameters back.

Which parameters differ is tracked, not measured: an encoder built from a delta
remembers the names it received (``changed_names``), and a merged adapter marks
every parameter changed. Folders written before deltas (``best/encoder``, a whole
Hugging Face model) still load; what starts from them saves every parameter.

The input (word) embedding matrix is the exception, measured rather than tracked: a
task touches only the rows of the subwords in its text, and AdamW without weight
decay leaves the other rows bit-identical. An encoder whose input embeddings train
keeps a CPU copy of the *pretrained* matrix (``keep_embedding_reference``, taken
before any delta is applied), and the delta stores only the rows that differ from it
bitwise: under the parameter's own name ``<name>`` the changed rows (changed x hidden)
and under ``<name>:rows`` their row indices (int64, ascending). Real parameter names
are dotted Python identifiers, so ``:rows`` cannot collide with one. Since the copy is
the pretrained matrix, a phase started from a delta saves every row changed since the
pretrained model (the earlier phase's and its own). Without the copy (an encoder
loaded from a whole model, a merged adapter) the whole matrix is saved; loading takes
either form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from xstilts.errors import XstiltsError
from xstilts.io import read_json, reading_back

DELTA_FILE = "trained.safetensors"
BASE_FILE = "base.json"
ENCODER_LAYOUT = "encoder-delta"
"""``base.json``'s ``layout`` of a delta (an adapter phase's best says ``adapters``)."""

ROWS_SUFFIX = ":rows"
"""``<name>:rows``: the row indices of the rows saved under ``<name>`` (see above)."""

_CHANGED = "_xstilts_changed"
_PRETRAINED = "_xstilts_pretrained_sha256"
_EMBEDDING_REFERENCE = "_xstilts_pretrained_input_embeddings"
_COMPARE_ROWS = 16_384
"""Rows compared at a time (bounds the comparison's temporary memory)."""


def mark(encoder: nn.Module, pretrained_sha256: str, changed: set[str]) -> None:
    """Remember, on the encoder, its pretrained fingerprint and the parameters that
    already differ from it."""
    setattr(encoder, _PRETRAINED, pretrained_sha256)
    setattr(encoder, _CHANGED, frozenset(changed))


def keep_embedding_reference(encoder: nn.Module) -> None:
    """Keep a CPU copy of the encoder's input embedding matrix, which must still be the
    pretrained one: ``changed_state`` then saves only the rows that differ from it."""
    compare_rows_with(encoder, encoder.get_input_embeddings().weight)


def compare_rows_with(encoder: nn.Module, pretrained: torch.Tensor) -> None:
    """Let ``changed_state`` save the input embeddings as the rows that differ from
    ``pretrained`` (the pretrained matrix; a CPU copy is kept)."""
    setattr(encoder, _EMBEDDING_REFERENCE, pretrained.detach().to("cpu", copy=True))


def mark_all_changed(encoder: nn.Module) -> None:
    """Every parameter may differ now (an adapter merged into the weights)."""
    setattr(encoder, _CHANGED, frozenset(name for name, _ in encoder.named_parameters()))
    if hasattr(encoder, _EMBEDDING_REFERENCE):
        delattr(encoder, _EMBEDDING_REFERENCE)  # saved whole, as without a copy


def changed_names(encoder: nn.Module) -> frozenset[str]:
    return getattr(encoder, _CHANGED, frozenset())


def pretrained_sha256(encoder: nn.Module) -> str | None:
    return getattr(encoder, _PRETRAINED, None)


def changed_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that differ from the pretrained encoder: trained in this phase or
    changed before it; the input embeddings as their changed rows where the encoder
    keeps the pretrained matrix to compare with."""
    earlier = changed_names(encoder)
    reference: torch.Tensor | None = getattr(encoder, _EMBEDDING_REFERENCE, None)
    embedding = encoder.get_input_embeddings().weight if reference is not None else None
    state: dict[str, torch.Tensor] = {}
    for name, parameter in encoder.named_parameters():
        if not (parameter.requires_grad or name in earlier):
            continue
        value = parameter.detach().contiguous().cpu()
        if parameter is embedding and reference is not None:
            rows = _changed_rows(value, reference)
            if rows is not None:
                state[name + ROWS_SUFFIX] = rows
                value = value.index_select(0, rows)
        state[name] = value
    return state


def _changed_rows(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor | None:
    """Indices (int64) of ``value``'s rows whose bytes differ from ``reference``'s; None
    where the two do not compare (another shape or dtype: save the whole matrix)."""
    if value.shape != reference.shape or value.dtype != reference.dtype or value.ndim != 2:
        return None
    rows = value.shape[0]
    changed: list[torch.Tensor] = []
    for start in range(0, rows, _COMPARE_ROWS):
        stop = min(start + _COMPARE_ROWS, rows)
        ours = value[start:stop].contiguous().view(torch.uint8)
        theirs = reference[start:stop].contiguous().view(torch.uint8)
        changed.append((ours != theirs).any(dim=1).nonzero().flatten() + start)
    return torch.cat(changed).to(torch.int64) if changed else torch.zeros(0, dtype=torch.int64)


def is_delta(folder: Path) -> bool:
    return (folder / DELTA_FILE).is_file() and (folder / BASE_FILE).is_file()


def apply_delta(encoder: nn.Module, folder: Path, pretrained: str, model_name: str) -> set[str]:
    """Put ``folder``'s saved parameters on ``encoder`` (the pretrained model, whose
    fingerprint is ``pretrained``); return their names."""
    base_path = folder / BASE_FILE
    with reading_back(base_path):
        base: dict[str, Any] = read_json(base_path)
    if base.get("layout") != ENCODER_LAYOUT:
        raise XstiltsError(f"{base_path}: holds {base.get('layout', 'no')} layout, not an encoder")
    recorded = str(base.get("pretrained_sha256"))
    if recorded != pretrained:
        raise XstiltsError(
            f"{base_path}: this model was trained from {base.get('model')} with sha256 "
            f"{recorded[:12]}, but {model_name} here has sha256 {pretrained[:12]}; its weights "
            "differ (another revision or another install): restore that model, or train "
            "the phase again (--restart-phase)"
        )
    path = folder / DELTA_FILE
    with reading_back(path):
        state = load_file(str(path))
    names = _put_rows_back(encoder, state, path, model_name)
    unexpected = encoder.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise XstiltsError(
            f"{path}: holds {', '.join(unexpected[:3])}, which {model_name} does not have"
        )
    return names | set(state)


def _put_rows_back(
    encoder: nn.Module, state: dict[str, torch.Tensor], path: Path, model_name: str
) -> set[str]:
    """Copy each ``<name>`` saved as rows (with ``<name>:rows``) into the encoder's
    parameter, removing both from ``state``; return those parameters' names."""
    parameters = dict(encoder.named_parameters())
    names: set[str] = set()
    for key in [k for k in state if k.endswith(ROWS_SUFFIX)]:
        name = key[: -len(ROWS_SUFFIX)]
        rows, values = state.pop(key), state.pop(name, None)
        parameter = parameters.get(name)
        if parameter is None or values is None:
            missing = name if parameter is None else f"the rows {name}"
            raise XstiltsError(f"{path}: holds {key}, but {model_name} does not have {missing}")
        if values.shape[1:] != parameter.shape[1:] or values.shape[0] != rows.numel():
            raise XstiltsError(
                f"{path}: {name} holds {tuple(values.shape)} for {rows.numel()} rows, which "
                f"do not fit {model_name}'s {tuple(parameter.shape)}"
            )
        with torch.no_grad():
            parameter.index_copy_(
                0,
                rows.to(device=parameter.device, dtype=torch.int64),
                values.to(device=parameter.device, dtype=parameter.dtype),
            )
        names.add(name)
    return names
