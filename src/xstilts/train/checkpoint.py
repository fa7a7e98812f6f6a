"""Training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint holds the parameters that train (a frozen base is rebuilt, not saved:
its sha256 is recorded and checked), the optimizer and scheduler, every random
number generator and the loop's own state (step, stream positions, early stopping),
so a resumed run continues exactly where the saved one stood.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xstilts.errors import XstiltsError
from xstilts.io import atomic_dir, atomic_write_json, read_json, reading_back, settled_dir

MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
RNG_TENSORS = "rng.safetensors"
OBJECTIVE_TENSORS = "objectives.safetensors"
STATE_FILE = "state.json"


def save_checkpoint(
    target: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop_state: dict[str, Any],
    objective_states: dict[int, dict[str, torch.Tensor]] | None = None,
) -> None:
    """``objective_states``: per task index, the tensors its training objective carries
    across steps (SMART's teacher)."""
    with atomic_dir(target) as scratch:
        save_file(_trained_parameters(model), str(scratch / MODEL_FILE))
        optimizer_tensors, optimizer_rest = _split_optimizer_state(optimizer.state_dict())
        save_file(optimizer_tensors, str(scratch / OPTIMIZER_TENSORS))
        rng_tensors, rng_rest = _rng_state()
        save_file(rng_tensors, str(scratch / RNG_TENSORS))
        objective_tensors = {
            f"{index}/{name}": tensor.contiguous()
            for index, tensors in (objective_states or {}).items()
            for name, tensor in tensors.items()
        }
        if objective_tensors:
            save_file(objective_tensors, str(scratch / OBJECTIVE_TENSORS))
        atomic_write_json(
            scratch / STATE_FILE,
            {
                "loop": loop_state,
                "optimizer": optimizer_rest,
                # LambdaLR's state is plain data (its lambdas are saved as None).
                "scheduler": scheduler.state_dict(),
                "rng": rng_rest,
                "base": getattr(model, "base", None),
            },
        )


def find_checkpoint(target: Path) -> Path | None:
    found = settled_dir(target)
    return found if found is not None and (found / STATE_FILE).is_file() else None


def load_checkpoint(
    source: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore everything saved by ``save_checkpoint``; return the loop state. A file
    that cannot be read is a ``DamagedFile`` error naming it."""
    with reading_back(source / STATE_FILE):
        saved = read_json(source / STATE_FILE)
        loop_state, optimizer_rest = saved["loop"], saved["optimizer"]
        scheduler_state, rng_rest = saved["scheduler"], saved["rng"]
    _check_base(source / STATE_FILE, saved.get("base"), getattr(model, "base", None))
    with reading_back(source / MODEL_FILE):
        trained = load_file(str(source / MODEL_FILE))
    wanted = {name for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(wanted - set(trained))
    if missing:
        raise XstiltsError(
            f"{source / MODEL_FILE}: no weights for {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}; the checkpoint belongs to another setup"
        )
    model.load_state_dict(trained, strict=False)
    with reading_back(source / OPTIMIZER_TENSORS):
        optimizer_tensors = load_file(str(source / OPTIMIZER_TENSORS))
        optimizer.load_state_dict(_join_optimizer_state(optimizer_tensors, optimizer_rest))
    scheduler.load_state_dict(scheduler_state)
    with reading_back(source / RNG_TENSORS):
        _restore_rng(load_file(str(source / RNG_TENSORS)), rng_rest)
    return loop_state


def load_objective_states(source: Path) -> dict[int, dict[str, torch.Tensor]]:
    """The objectives' tensors saved with a checkpoint, per task index."""
    path = source / OBJECTIVE_TENSORS
    if not path.is_file():
        return {}
    with reading_back(path):
        tensors = load_file(str(path))
    states: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        index, name = key.split("/", 1)
        states.setdefault(int(index), {})[name] = tensor
    return states


def _trained_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (tied ones once): all a checkpoint needs of the model."""
    return {
        name: parameter.detach().contiguous().cpu()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def _check_base(path: Path, saved: dict[str, Any] | None, current: dict[str, Any] | None) -> None:
    if saved and current and saved.get("sha256") != current.get("sha256"):
        raise XstiltsError(
            f"{path}: this checkpoint was trained on a base with sha256 "
            f"{saved.get('sha256', '?')[:12]}, but the run now starts from "
            f"{current.get('sha256', '?')[:12]}; restart the phase (--restart-phase)"
        )


def _split_optimizer_state(
    state: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}/{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict:
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param_id, name = key.split("/", 1)
        per_param.setdefault(int(param_id), {})[name] = value
    for param_id, entries in rest["scalars"].items():
        per_param.setdefault(int(param_id), {}).update(entries)
    return {"state": per_param, "param_groups": rest["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{index}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    rest = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, rest


def _restore_rng(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = rest["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = rest["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
