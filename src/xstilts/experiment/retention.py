"""What a finished phase keeps on disk (``runtime.keep``).

- ``results`` (the default): every phase others start from keeps its ``best/``
  (intermediate and language adapter phases, and the target stages of a run whose
  target is evaluated straight from them); a target run keeps its predictions and
  scores, its trained model goes once results.json is written.
- ``best``: every phase keeps its ``best/`` (a target run can evaluate more
  languages later).
- ``all``: every phase also keeps ``checkpoints/last`` (model and optimizer state).

A checkpoint goes only once its phase has finished (``training.json``): a phase
killed on the way still resumes from it. Nothing here takes a lock: the pipeline calls
it on folders it holds, ``xstilts clean`` (experiment/clean.py) locks each folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from xstilts.experiment.evaluation_records import RESULTS_FILE
from xstilts.experiment.run_folder import STAGES_DIR
from xstilts.train.loop import BEST_DIR, phase_result

Keep = Literal["all", "best", "results"]
KEEP_CHOICES: tuple[Keep, ...] = ("all", "best", "results")
CHECKPOINTS_DIR = "checkpoints"


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it is not there)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # removed meanwhile
                continue
    return total


def removable_after_phase(folder: Path, keep: Keep) -> list[Path]:
    """What a finished phase folder no longer needs: its checkpoints, unless ``all``."""
    if keep == "all" or not phase_result(folder).is_file():
        return []
    checkpoints = folder / CHECKPOINTS_DIR
    return [checkpoints] if checkpoints.exists() else []


def removable_after_run(run_dir: Path, keep: Keep) -> list[Path]:
    """What a target run folder whose results.json is written no longer needs: the
    checkpoints of its finished phases, and under ``results`` its trained models (a
    stage's too, unless the target is evaluated straight from the stage's encoder)."""
    stages = sorted(p for p in (run_dir / STAGES_DIR).glob("*/") if p.is_dir())
    found = [p for folder in (*stages, run_dir) for p in removable_after_phase(folder, keep)]
    if keep != "results" or not (run_dir / RESULTS_FILE).is_file():
        return found
    target_trained = phase_result(run_dir).is_file()
    models = [run_dir / BEST_DIR] + ([s / BEST_DIR for s in stages] if target_trained else [])
    return found + [p for p in models if p.exists()]


def remove(paths: list[Path]) -> int:
    """Delete ``paths``; return the bytes freed."""
    freed = 0
    for path in paths:
        size = folder_bytes(path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        freed += size
    return freed


def model_removed(run_dir: Path) -> bool:
    """Whether a trained target's model went after evaluation (``keep: results``)."""
    return phase_result(run_dir).is_file() and not (run_dir / BEST_DIR).exists()
