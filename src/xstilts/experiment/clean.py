"""``xstilts clean``: apply a retention policy (experiment/retention.py) to the run
folders of an output folder or grid, after the fact.

Each phase folder is taken under its lock (a folder a running process holds is
skipped), and loses only what its finished phases no longer need: the scratch of
killed writes, the checkpoints of finished phases, and under ``results`` the trained
model of a target run whose evaluation is complete for its config.yaml (a run asked
to evaluate more languages keeps its model until it has). A best model that stays and
was saved whole by an earlier version (``best/encoder``) is rewritten as its delta on
the pretrained encoder (modeling/whole_best.py), which needs that encoder at hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from xstilts.config import load_config
from xstilts.errors import XstiltsError
from xstilts.experiment import evaluation_records, retention, run_folder
from xstilts.experiment.evaluation_records import EvaluationKey
from xstilts.experiment.pipeline import CONFIG_FILE, LANGUAGE_ADAPTERS_DIR
from xstilts.experiment.resolve import resolve
from xstilts.experiment.run_folder import RunLock
from xstilts.modeling import whole_best
from xstilts.modeling.deltas import BASE_FILE, DELTA_FILE
from xstilts.modeling.encoders import ENCODER_DIR, load_tokenizer
from xstilts.train.loop import BEST_DIR

log = logging.getLogger(__name__)

SHARED_PHASES = (LANGUAGE_ADAPTERS_DIR, "intermediate")


@dataclass
class Cleaned:
    removed: list[tuple[Path, int]] = field(default_factory=list)
    """Each path removed (or, in a dry run, removable), with its bytes."""
    in_use: list[Path] = field(default_factory=list)
    """Folders skipped: a running process holds them."""
    converted: list[tuple[Path, int]] = field(default_factory=list)
    """Each ``best/`` rewritten from a whole encoder to a delta, with the bytes it freed
    (in a dry run: the whole encoder's bytes, the most it can free)."""
    not_converted: list[tuple[Path, str]] = field(default_factory=list)
    """Whole-encoder ``best/`` folders left as they were, and why."""

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.removed) + sum(size for _, size in self.converted)


def clean(root: Path, keep: retention.Keep, *, dry_run: bool = False) -> Cleaned:
    """Apply ``keep`` to every phase folder under ``root`` (a grid or ``--out`` folder)."""
    if not root.is_dir():
        raise XstiltsError(f"{root}: no such folder of runs")
    folders = [f for kind in SHARED_PHASES for f in sorted((root / kind).glob("*/"))]
    runs = sorted((root / "runs").glob("*/"))
    if not folders and not runs:
        raise XstiltsError(
            f"{root}: no run folders in it (expected runs/, intermediate/ or "
            f"{LANGUAGE_ADAPTERS_DIR}/ as xstilts run --out writes them)"
        )
    cleaned = Cleaned()
    for folder in folders:
        _clean_folder(folder, cleaned, dry_run, lambda f: retention.removable_after_phase(f, keep))
    for folder in runs:
        _clean_folder(folder, cleaned, dry_run, lambda f: _removable_in_run(f, keep))
    return cleaned


def _clean_folder(
    folder: Path,
    cleaned: Cleaned,
    dry_run: bool,
    removable: Callable[[Path], list[Path]],
) -> None:
    lock = RunLock(folder)
    try:
        lock.__enter__()
    except XstiltsError:  # a running process holds it
        cleaned.in_use.append(folder)
        return
    try:
        for path in removable(folder) + _scratch(folder):
            size = retention.folder_bytes(path)
            if not dry_run:
                retention.remove([path])
            cleaned.removed.append((path, size))
        gone = {path for path, _ in cleaned.removed}
        bests = [folder / BEST_DIR, *sorted((folder / run_folder.STAGES_DIR).glob(f"*/{BEST_DIR}"))]
        for best in bests:
            if best not in gone and whole_best.is_whole_best(best):
                _convert(folder, best, cleaned, dry_run)
    finally:
        lock.__exit__(None, None, None)


def _convert(folder: Path, best: Path, cleaned: Cleaned, dry_run: bool) -> None:
    """Rewrite a whole-encoder ``best`` as a delta (see the module doc)."""
    whole = retention.folder_bytes(best / ENCODER_DIR)
    if dry_run:
        cleaned.converted.append((best, whole))
        return
    try:
        model = load_config(folder / CONFIG_FILE).model
        whole_best.convert_whole_best(best, model, load_tokenizer(model))
    except (XstiltsError, OSError) as err:
        log.warning("%s: kept whole (%s)", best, err)
        cleaned.not_converted.append((best, str(err)))
        return
    cleaned.converted.append((best, whole - _delta_bytes(best)))


def _delta_bytes(best: Path) -> int:
    return sum((best / name).stat().st_size for name in (DELTA_FILE, BASE_FILE))


def _scratch(folder: Path) -> list[Path]:
    """What killed atomic writes (and best-model rewrites) left, removed as a run's
    start would."""
    places = [folder, folder / retention.CHECKPOINTS_DIR, folder / BEST_DIR]
    places += sorted((folder / run_folder.STAGES_DIR).glob("*/"))
    return [
        entry
        for place in places
        if place.is_dir()
        for entry in place.iterdir()
        if entry.name.startswith(".") and (entry.is_dir() or entry.name.endswith(".tmp"))
    ]


def _removable_in_run(run_dir: Path, keep: retention.Keep) -> list[Path]:
    """A target run: its trained models go only once its evaluation is complete."""
    if keep == "results" and not _evaluated(run_dir):
        return retention.removable_after_run(run_dir, "best")  # checkpoints only
    return retention.removable_after_run(run_dir, keep)


def _evaluated(run_dir: Path) -> bool:
    """Whether the run scored every language its config.yaml asks for."""
    try:
        config = load_config(run_dir / CONFIG_FILE)
        experiment = resolve(config, planning=True)
    except (XstiltsError, OSError) as err:
        log.warning("%s: keeping its model, its config cannot be read (%s)", run_dir, err)
        return False
    evaluation = config.evaluation
    return evaluation_records.is_complete(
        run_dir,
        EvaluationKey(evaluation.split, evaluation.max_examples),
        experiment.languages,
        evaluation.benchmark,
    )
