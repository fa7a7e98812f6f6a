"""Robustness of each option's transfer, beyond its mean: the spread over seeds, the
worst language, the spread over languages and the gap between English and the
zero-shot languages, each compared with the baseline's.

Unit: the run. Every statistic but the SD over seeds is computed within each run (its
lowest language score, its SD over languages, its English minus its non-English mean)
and compared as one number per run with the permutation test of
:mod:`xstilts.report.statistics`. The SD over seeds is a spread between runs; it is
compared by a Brown-Forsythe-style permutation test: each run's absolute deviation
from its option's median run score, option against baseline. All comparisons of the
table are corrected together (Holm by default).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace

import numpy as np

from xstilts.report.data import GridScores, Option
from xstilts.report.statistics import Correction, RunComparison, compare_runs, corrected

STATISTICS = ("mean", "seed_sd", "worst", "language_sd", "gap")
"""What a robustness row reports: the mean run score; the SD over seeds of the run
scores; the mean over runs of each run's lowest language score; the mean over runs of
each run's SD over languages; the mean over runs of English minus the mean of the
other languages."""


@dataclass
class RobustnessRow:
    option: Option
    target: str
    values: dict[str, float | None]
    worst_language: str | None
    """The language with the lowest mean score (descriptive)."""
    n: int = 0
    diffs: dict[str, float | None] = field(default_factory=dict)
    tests: dict[str, RunComparison | None] = field(default_factory=dict)


def per_run(grid: GridScores, label: str, target: str) -> dict[str, list[float]]:
    """Each within-run statistic, one value per run (runs in seed order)."""
    languages = grid.languages(target)
    others = [lg for lg in languages if lg != "en"]
    out: dict[str, list[float]] = {"mean": [], "worst": [], "language_sd": [], "gap": []}
    for seed in grid.seeds(label, target):
        scores = grid.lang[(label, target, seed)]
        values = [scores[lg] for lg in languages if lg in scores]
        if len(values) != len(languages) or not values:
            continue
        out["mean"].append(statistics.fmean(values))
        out["worst"].append(min(values))
        if len(values) > 1:
            out["language_sd"].append(statistics.stdev(values))
        if "en" in languages and others:
            out["gap"].append(scores["en"] - statistics.fmean(scores[lg] for lg in others))
    return out


def _values(runs: dict[str, list[float]]) -> dict[str, float | None]:
    means = runs["mean"]
    values: dict[str, float | None] = {
        name: statistics.fmean(runs[name]) if runs[name] else None
        for name in ("mean", "worst", "language_sd", "gap")
    }
    values["seed_sd"] = statistics.stdev(means) if len(means) > 1 else None
    return values


def _worst_language(grid: GridScores, label: str, target: str) -> str | None:
    languages = grid.languages(target)
    if not languages:
        return None
    means = {
        lg: statistics.fmean(grid.run_scores(label, target, [lg]).values()) for lg in languages
    }
    return min(means, key=lambda lg: means[lg])


def _spread_test(mine: list[float], theirs: list[float], seed: int) -> RunComparison | None:
    """SD over seeds, option against baseline: permutation test of the runs' absolute
    deviations from their own option's median; the difference shown is of the SDs."""
    if len(mine) < 2 or len(theirs) < 2:
        return None
    test = compare_runs(
        list(np.abs(np.array(mine) - np.median(mine))),
        list(np.abs(np.array(theirs) - np.median(theirs))),
        seed=seed,
    )
    if test is None:
        return None
    return replace(test, diff=statistics.stdev(mine) - statistics.stdev(theirs), ci=None)


def robustness_rows(
    grid: GridScores, correction: Correction = "holm", *, seed: int = 0
) -> list[RobustnessRow]:
    rows = []
    base = grid.baseline
    for target in grid.targets:
        base_runs = per_run(grid, base.label, target) if base is not None else None
        for option in grid.options:
            runs = per_run(grid, option.label, target)
            if not runs["mean"]:
                continue
            row = RobustnessRow(
                option,
                target,
                _values(runs),
                _worst_language(grid, option.label, target),
                n=len(runs["mean"]),
            )
            if base_runs is not None and base_runs["mean"] and not option.is_baseline:
                _compare(row, runs, base_runs, seed)
            rows.append(row)
    slots = [(r, name) for r in rows for name in STATISTICS if r.tests.get(name) is not None]
    fixed = corrected([r.tests[name] for r, name in slots], correction)
    for (row, name), test in zip(slots, fixed, strict=True):
        row.tests[name] = test
    return rows


def _compare(
    row: RobustnessRow, runs: dict[str, list[float]], base: dict[str, list[float]], seed: int
) -> None:
    theirs = _values(base)
    for name in STATISTICS:
        mine, other = row.values.get(name), theirs.get(name)
        row.diffs[name] = None if mine is None or other is None else mine - other
    for name in ("mean", "worst", "language_sd", "gap"):
        row.tests[name] = compare_runs(runs[name], base[name], seed=seed)
    row.tests["seed_sd"] = _spread_test(runs["mean"], base["mean"], seed)


def robustness_tests(rows: list[RobustnessRow]) -> list[RunComparison]:
    return [t for r in rows for t in r.tests.values() if t is not None]
