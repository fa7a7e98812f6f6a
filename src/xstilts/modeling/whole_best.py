"""Best models saved before deltas, rewritten as deltas (``xstilts clean`` does this).

Earlier versions saved a phase's ``best/`` as the whole encoder and a copy of the
tokenizer in ``best/encoder`` (the Hugging Face layout): 2.2 GB a phase for XLM-R
Large. They still load (modeling/encoders.py), but hold the frozen layers and the
untouched embedding rows again for every phase. ``convert_whole_best`` writes what
differs from the pretrained encoder, as ``save_model`` does now (modeling/deltas.py),
checks that the delta rebuilds the saved encoder bit for bit, and only then removes
``best/encoder``. The heads are already saved apart and stay as they are.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from xstilts.config import ModelConfig
from xstilts.errors import XstiltsError
from xstilts.io import atomic_write_json, fsync_dir, read_json
from xstilts.modeling import deltas
from xstilts.modeling.deltas import BASE_FILE, DELTA_FILE, ENCODER_LAYOUT
from xstilts.modeling.encoders import ENCODER_DIR, build_encoder, weights_fingerprint

CONVERTED_FROM = "a whole encoder (best/encoder, written before deltas)"


def is_whole_best(best: Path) -> bool:
    """Whether ``best`` holds its encoder whole (``best/encoder``) and nothing that a
    delta would overwrite (an adapter phase's files; a conversion killed halfway left
    an encoder delta, which is written again)."""
    if not (best / ENCODER_DIR).is_dir():
        return False
    if not (best / BASE_FILE).is_file():
        return True
    try:
        base = read_json(best / BASE_FILE)
    except (OSError, ValueError):
        return False
    return isinstance(base, dict) and base.get("layout") == ENCODER_LAYOUT


def convert_whole_best(best: Path, model: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Rewrite ``best`` (saved whole, in ``best/encoder``) as its delta on ``model``'s
    pretrained encoder; ``best/encoder`` goes once the delta rebuilds it exactly.

    Raises:
        XstiltsError: the saved encoder does not fit ``model`` (another architecture or
            vocabulary), or the delta does not rebuild it (then nothing is removed).
    """
    whole = build_encoder(model, tokenizer, best)
    pretrained = build_encoder(model, tokenizer)
    reference = dict(pretrained.named_parameters())
    changed = set()
    for name, parameter in whole.named_parameters():
        original = reference.get(name)
        if original is None or original.shape != parameter.shape:
            raise XstiltsError(
                f"{best / ENCODER_DIR}: its {name} does not fit {model.display_name} (the "
                "model.name of the run's config.yaml); keep the folder as it is"
            )
        if not _same_bits(parameter, original):
            changed.add(name)
    fingerprint = deltas.pretrained_sha256(pretrained)
    assert fingerprint is not None, "build_encoder marks the pretrained fingerprint"
    whole.requires_grad_(False)  # what is saved is what differs, trained or not
    deltas.mark(whole, fingerprint, changed)
    deltas.compare_rows_with(whole, pretrained.get_input_embeddings().weight)
    scratch = best / f".{DELTA_FILE}.tmp"
    save_file(deltas.changed_state(whole), str(scratch))
    os.replace(scratch, best / DELTA_FILE)
    base = {
        "model": model.display_name,
        "revision": model.revision,
        "sha256": weights_fingerprint(whole),
        "layout": ENCODER_LAYOUT,
        "pretrained_sha256": fingerprint,
        "converted_from": CONVERTED_FROM,
    }
    atomic_write_json(best / BASE_FILE, base)
    fsync_dir(best)
    _check_rebuilds(best, model, pretrained, whole, fingerprint)
    # Renamed first: a half-deleted encoder/ would still be loaded in place of the delta.
    doomed = best / f".{ENCODER_DIR}.removed"
    shutil.rmtree(doomed, ignore_errors=True)  # left by a removal killed halfway
    os.replace(best / ENCODER_DIR, doomed)
    shutil.rmtree(doomed)


def _check_rebuilds(
    best: Path,
    model: ModelConfig,
    pretrained: torch.nn.Module,
    whole: torch.nn.Module,
    fingerprint: str,
) -> None:
    """Put the written delta on ``pretrained`` (not needed otherwise any more: the row
    reference is a copy) and compare it with ``whole``."""
    deltas.apply_delta(pretrained, best, fingerprint, model.display_name)
    ours, theirs = pretrained.state_dict(), whole.state_dict()
    differing = [n for n in theirs if n not in ours or not _same_bits(ours[n], theirs[n])]
    if differing:
        for written in (best / DELTA_FILE, best / BASE_FILE):
            written.unlink(missing_ok=True)
        raise XstiltsError(
            f"{best}: the delta written for best/encoder does not rebuild {differing[0]}; "
            "best/encoder is kept as it was"
        )


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(_bytes(a), _bytes(b))


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)
