"""Robustness of each option's transfer, beyond its mean: the spread over seeds, the
worst language, the spread over languages and the gap between English and the
zero-shot languages, each compared with the baseline's.

Significance: a paired bootstrap over seeds and languages. Both the option's and the
baseline's [seed x language] score matrices (the seeds and languages they share)
are resampled with the same draws (seeds with replacement, languages with
replacement; for the gap, English is kept and the other languages are resampled),
each statistic's difference (option - baseline) is recomputed, and the two-sided
p-value is that of the shifted null, as for the mean: (1 + #{|D_b - D| >= |D|}) /
(1 + resamples). Fewer than 5 (seed, language) pairs get no test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xstilts.report.data import GridScores, Option
from xstilts.report.significance import MIN_PAIRS, RESAMPLES, SEED

STATISTICS = ("mean", "seed_sd", "worst", "language_sd", "gap")
"""What a robustness row reports: mean; SD over seeds of the task score; the lowest
per-language mean; SD over languages of the per-language means; English minus the
mean of the other languages."""


@dataclass
class RobustnessRow:
    option: Option
    target: str
    values: dict[str, float | None]
    worst_language: str | None
    diffs: dict[str, float | None] = field(default_factory=dict)
    p: dict[str, float | None] = field(default_factory=dict)


def _matrix(grid: GridScores, label: str, target: str) -> tuple[list, list[str], np.ndarray]:
    seeds = grid.seeds(label, target)
    per_seed = [grid.lang[(label, target, s)] for s in seeds]
    languages = sorted(set.intersection(*(set(p) for p in per_seed)) if per_seed else set())
    languages.sort(key=lambda lg: (lg != "en", lg))
    values = np.array([[p[lg] for lg in languages] for p in per_seed], dtype=float)
    return seeds, languages, values


def statistics_of(values: np.ndarray, languages: list[str]) -> dict[str, float | None]:
    """The robustness statistics of one [seed x language] matrix."""
    by_language = values.mean(axis=0)
    by_seed = values.mean(axis=1)
    others = [i for i, lg in enumerate(languages) if lg != "en"]
    gap = None
    if "en" in languages and others:
        gap = float(by_language[languages.index("en")] - by_language[others].mean())
    return {
        "mean": float(values.mean()),
        "seed_sd": float(by_seed.std(ddof=1)) if len(by_seed) > 1 else None,
        "worst": float(by_language.min()),
        "language_sd": float(by_language.std(ddof=1)) if len(by_language) > 1 else None,
        "gap": gap,
    }


def robustness_rows(
    grid: GridScores, *, resamples: int = RESAMPLES, seed: int = SEED
) -> list[RobustnessRow]:
    rows = []
    base = grid.baseline
    for target in grid.targets:
        for option in grid.options:
            _, languages, values = _matrix(grid, option.label, target)
            if values.size == 0:
                continue
            row = RobustnessRow(
                option,
                target,
                statistics_of(values, languages),
                languages[int(values.mean(axis=0).argmin())],
            )
            if base is not None and not option.is_baseline:
                _compare(grid, row, base.label, resamples, seed)
            rows.append(row)
    return rows


def _compare(grid: GridScores, row: RobustnessRow, base: str, resamples: int, seed: int) -> None:
    """Differences to the baseline and their paired bootstrap p-values."""
    mine_seeds, mine_languages, _ = _matrix(grid, row.option.label, row.target)
    base_seeds, base_languages, _ = _matrix(grid, base, row.target)
    seeds = [s for s in mine_seeds if s in base_seeds]
    languages = [lg for lg in mine_languages if lg in base_languages]
    if not seeds or not languages:
        return
    mine = _aligned(grid, row.option.label, row.target, seeds, languages)
    theirs = _aligned(grid, base, row.target, seeds, languages)
    a, b = statistics_of(mine, languages), statistics_of(theirs, languages)
    row.diffs = {k: None if a[k] is None or b[k] is None else a[k] - b[k] for k in STATISTICS}
    if mine.size < MIN_PAIRS:
        return
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, len(seeds), (resamples, len(seeds)))
    language_draws = rng.integers(0, len(languages), (resamples, len(languages)))
    draws = _resampled(mine, seed_draws, language_draws) - _resampled(
        theirs, seed_draws, language_draws
    )
    others = [i for i, lg in enumerate(languages) if lg != "en"]
    if "en" in languages and others:  # the gap keeps English and resamples the others
        picked = np.array(others)[rng.integers(0, len(others), (resamples, len(others)))]
        english = languages.index("en")
        draws["gap"] = _gaps(mine, seed_draws, english, picked) - _gaps(
            theirs, seed_draws, english, picked
        )
    for name in STATISTICS:
        d = row.diffs.get(name)
        if d is None or name not in draws:
            row.p[name] = None
            continue
        extreme = np.abs(draws[name] - d) >= abs(d) - 1e-12
        row.p[name] = float((1 + extreme.sum()) / (1 + resamples))


def _aligned(grid: GridScores, label: str, target: str, seeds: list, languages: list[str]):
    return np.array(
        [[grid.lang[(label, target, s)][lg] for lg in languages] for s in seeds], dtype=float
    )


class _Draws(dict):
    def __sub__(self, other: _Draws) -> _Draws:
        return _Draws({k: self[k] - other[k] for k in self if k in other})


def _resampled(values: np.ndarray, seeds: np.ndarray, languages: np.ndarray) -> _Draws:
    """Each statistic but the gap, for every resample at once: [resamples]."""
    cube = values[seeds[:, :, None], languages[:, None, :]]  # [resamples, seeds, languages]
    by_language, by_seed = cube.mean(axis=1), cube.mean(axis=2)
    draws = _Draws(mean=cube.mean(axis=(1, 2)), worst=by_language.min(axis=1))
    if values.shape[0] > 1:
        draws["seed_sd"] = by_seed.std(axis=1, ddof=1)
    if values.shape[1] > 1:
        draws["language_sd"] = by_language.std(axis=1, ddof=1)
    return draws


def _gaps(values: np.ndarray, seeds: np.ndarray, english: int, others: np.ndarray) -> np.ndarray:
    rows = values[seeds]  # [resamples, seeds, languages]
    english_mean = rows[:, :, english].mean(axis=1)
    other_means = np.take_along_axis(rows, others[:, None, :].repeat(rows.shape[1], 1), 2)
    return english_mean - other_means.mean(axis=(1, 2))
