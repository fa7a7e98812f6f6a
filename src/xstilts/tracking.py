"""Experiment trackers (TensorBoard, W&B, MLflow, ...) through Accelerate's tracker API.

Each trained phase folder (a language adapter, an intermediate phase, a target run)
is one tracker run named after the folder, so a run id found in a tracker is the
folder on disk. Grid runs share the grid's name as project and group. Values are
logged under fixed names:

- ``train/loss``, ``train/lr`` (and ``train/<term>`` for adversarial terms), at each
  logging interval of the training loop;
- ``validation/score`` (the combined score that picks the best model) and
  ``validation/<task>/<metric>`` for every metric of every task, at each validation;
- ``<split>/<language>/<metric>``, ``<split>/average`` and ``<split>/average_zero_shot``
  once a target run is evaluated.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from xstilts.config import ExperimentConfig
from xstilts.errors import XstiltsError

TRACKERS_DIR = "trackers"
"""Inside a phase folder: where trackers that write files put them."""
DEFAULT_PROJECT = "xstilts"

# The module each tracker needs, and the pip package that provides it.
_PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "xstilts[tensorboard]"),
    "wandb": ("wandb", "xstilts[wandb]"),
    "mlflow": ("mlflow", "xstilts[mlflow]"),
    "aim": ("aim", "aim"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}


def check_trackers(names: list[str]) -> None:
    """Fail before any training when a tracker's package is missing."""
    for name in names:
        module, package = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise XstiltsError(
                f"runtime.log_with names {name}, which is not installed: pip install '{package}'"
            )


def project_name(config: ExperimentConfig) -> str:
    return config.runtime.project or config.grid_name or DEFAULT_PROJECT


def start_tracking(
    accelerator: Accelerator, config: ExperimentConfig, phase_dir: Path, phase: str
) -> None:
    """Open one tracker run for the phase in ``phase_dir`` on ``accelerator`` (built with
    ``log_with`` and ``phase_dir`` as its project folder) and log the config."""
    run_name = phase_dir.name
    folder = phase_dir / TRACKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    grid = config.grid_name
    tags = [t for t in (phase, grid, config.grid_option) if t]
    init_kwargs: dict[str, dict[str, Any]] = {
        "wandb": {
            "name": run_name,
            "group": grid,
            "job_type": phase,
            "tags": tags,
            "dir": str(folder),
        },
        "mlflow": {"run_name": run_name, "tags": {"phase": phase, "grid": grid or ""}},
        "aim": {"experiment": project_name(config)},
        "dvclive": {"dir": str(folder / "dvclive")},
    }
    if accelerator.is_main_process and "mlflow" in config.runtime.log_with:
        _mlflow_store(folder)
    values = {"phase": phase, "run_id": run_name, **flat_config(config.model_dump(mode="json"))}
    accelerator.init_trackers(project_name(config), config=values, init_kwargs=init_kwargs)


def stop_tracking(accelerator: Accelerator) -> None:
    """Close the phase's tracker runs (not ``end_training``: that also ends the process
    group, which later phases of the same process still need)."""
    if accelerator.is_main_process:
        for tracker in accelerator.trackers:
            tracker.finish()
    accelerator.trackers = []


def _mlflow_store(folder: Path) -> None:
    """MLflow logs where MLFLOW_TRACKING_URI says, else into a file store in the run's
    folder (MLflow 3 keeps file stores in maintenance mode, behind an opt-in)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((folder / "mlruns").resolve().as_uri())


def flat_config(payload: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b.c": value}`` with scalar values, as every tracker takes
    (lists are written as JSON text)."""
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def training_values(means: Mapping[str, float], learning_rate: float) -> dict[str, float]:
    """One logging interval of the training loop: mean loss (and terms) and the lr."""
    return {**{f"train/{key}": value for key, value in means.items()}, "train/lr": learning_rate}


def validation_values(
    score: float, per_task: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    values = {"validation/score": score}
    for task, metrics in per_task.items():
        values.update(_numbers(f"validation/{task}", metrics))
    return values


def score_values(results: Mapping[str, Any]) -> dict[str, float]:
    """The final per-language scores of a results.json payload."""
    split = results["split"]
    values: dict[str, float] = {}
    for lang, metrics in results["languages"].items():
        values.update(_numbers(f"{split}/{lang}", metrics))
    for key in ("average", "average_zero_shot"):
        if results.get(key) is not None:
            values[f"{split}/{key}"] = results[key]
    return values


def _numbers(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries (records also hold data fingerprints and adapter names)."""
    return {
        f"{prefix}/{name}": float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
