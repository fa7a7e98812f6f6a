"""Rank every target's intermediate options with one or several estimators.

Estimates are kept in OUT/selection/estimates.json (one entry per method, settings
and target run of the grid's first seed), so asking again costs nothing and a grid
in budget mode plans from the same numbers ``xstilts select`` prints. Intermediate
phases a feature-based estimator needs and the grid has not trained yet are trained
first, through the pipeline (and reused by the grid later).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.config import config_hash
from xstilts.errors import XstiltsError
from xstilts.experiment.grid import GridConfig
from xstilts.experiment.pipeline import run_intermediate_phase
from xstilts.io import atomic_write_json, read_json
from xstilts.progress import progress_bar
from xstilts.selection.agreement import order
from xstilts.selection.candidates import TargetCandidates, grid_candidates
from xstilts.selection.estimators import (
    ESTIMATORS,
    NEEDS_INTERMEDIATE_MODELS,
    Context,
    Estimate,
    settings_key,
)
from xstilts.selection.settings import METHODS, SelectionSettings
from xstilts.train.loop import phase_result

log = logging.getLogger(__name__)

SELECTION_DIR = "selection"
ESTIMATES_FILE = "estimates.json"


@dataclass
class Ranked:
    option: str
    estimate: Estimate


@dataclass
class TargetRanking:
    target: str
    method: str
    ranked: list[Ranked] = field(default_factory=list)
    """Best first; unscored options last."""
    skipped: str | None = None
    """Why the target has no ranking (then ``ranked`` is empty)."""

    @property
    def seconds(self) -> float:
        return sum(r.estimate.seconds for r in self.ranked)

    def top(self, k: int) -> list[str]:
        return [r.option for r in self.ranked[:k]]


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise XstiltsError(
            f"--method {', '.join(unknown) or '(none)'}: choose from {', '.join(METHODS)}"
        )
    return list(dict.fromkeys(methods))


def estimates_path(out_root: Path) -> Path:
    return out_root / SELECTION_DIR / ESTIMATES_FILE


def train_missing_intermediates(groups: list[TargetCandidates], out_root: Path) -> None:
    """Train (through the pipeline) the intermediate phases estimators need and the
    grid has not trained yet."""
    missing = {}
    for group in groups:
        for candidate in group.candidates:
            folder = candidate.inter_dir
            if folder is not None and not phase_result(folder).is_file():
                missing.setdefault(folder, candidate)
    for index, (folder, candidate) in enumerate(missing.items(), 1):
        log.info("training intermediate phase %d/%d: %s", index, len(missing), folder.name)
        run_intermediate_phase(candidate.raw_config, out_root)


def rank_grid(
    grid: GridConfig,
    out_root: Path,
    methods: list[str],
    settings: SelectionSettings,
    source: str = "grid",
) -> tuple[list[TargetCandidates], dict[str, list[TargetRanking]]]:
    """The grid's targets with their options, and each method's ranking of each
    target's options (estimates reused from disk)."""
    methods = check_methods(methods)
    groups = grid_candidates(grid, out_root, source)
    if NEEDS_INTERMEDIATE_MODELS & set(methods):
        train_missing_intermediates(groups, out_root)
    cache_file = estimates_path(out_root)
    cache: dict[str, Any] = read_json(cache_file) if cache_file.is_file() else {}
    rankings: dict[str, list[TargetRanking]] = {}
    for method in methods:
        context = Context(out_root, settings)  # each method pays for its own shared work
        rankings[method] = []
        for group in groups:
            ranking = _rank_target(context, method, group, cache, settings)
            rankings[method].append(ranking)
            atomic_write_json(cache_file, cache)
    return groups, rankings


def _rank_target(
    context: Context,
    method: str,
    group: TargetCandidates,
    cache: dict[str, Any],
    settings: SelectionSettings,
) -> TargetRanking:
    ranking = TargetRanking(group.target, method)
    if group.task is None and method != "size":
        ranking.skipped = "no English training data (no training, no target stages)"
        log.warning("target %s: %s", group.target, ranking.skipped)
        return ranking
    used = settings_key(method, settings)
    keys = {
        c.option: f"{method}:{c.experiment.run_name}:{config_hash(used)}" for c in group.candidates
    }
    estimates: dict[str, Estimate] = {}
    fresh: list[str] = []
    for candidate in group.candidates:
        entry = cache.get(keys[candidate.option])
        if entry is not None:
            estimates[candidate.option] = Estimate(
                entry["value"], entry["seconds"], entry["note"], entry.get("load")
            )
    todo = [c for c in group.candidates if c.option not in estimates]
    bar = progress_bar(total=len(todo), desc=f"{method} {group.target}", disable=not todo)
    started = time.perf_counter()
    for candidate in todo:
        estimate = ESTIMATORS[method](context, group, candidate)
        estimate.load = os.getloadavg()[0]
        estimates[candidate.option] = estimate
        fresh.append(candidate.option)
        bar.update(1)
    bar.close()
    if fresh:
        # work shared by the options of the target (its features), split evenly
        shared = context.shared_seconds.pop(group.target, 0.0) / len(fresh)
        for option in fresh:
            estimate = estimates[option]
            estimate.seconds += shared
            cache[keys[option]] = {
                "method": method,
                "option": option,
                "target": group.target,
                "value": estimate.value,
                "seconds": estimate.seconds,
                "note": estimate.note,
                "load": estimate.load,
                "settings": used,
            }
        log.info(
            "%s %s: %d options estimated in %.1fs",
            method,
            group.target,
            len(fresh),
            time.perf_counter() - started,
        )
    options = [c.option for c in group.candidates]
    for index in order([estimates[o].value for o in options]):
        ranking.ranked.append(Ranked(options[index], estimates[options[index]]))
    return ranking
