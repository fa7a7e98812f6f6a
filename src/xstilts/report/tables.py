"""The numbers of the paper's tables: main table, family averages, XTREME score.

A cell is the mean ± sample standard deviation (``ddof=1``; none with one seed)
over seeds of the task score (the mean over languages of the per-language score),
its difference to the baseline's mean and the paired-bootstrap p-value of that
difference (see :mod:`xstilts.report.significance`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from xstilts.report.data import BASELINE, GridScores, Option
from xstilts.report.significance import paired_bootstrap


@dataclass
class Cell:
    mean: float
    std: float | None
    n: int
    diff: float | None = None
    p: float | None = None


@dataclass
class MainRow:
    option: Option
    cells: dict[str, Cell | None]

    @property
    def average(self) -> float | None:
        means = [c.mean for c in self.cells.values() if c is not None]
        return statistics.fmean(means) if means and len(means) == len(self.cells) else None

    @property
    def average_diff(self) -> float | None:
        diffs = [c.diff for c in self.cells.values() if c is not None and c.diff is not None]
        return statistics.fmean(diffs) if diffs and len(diffs) == len(self.cells) else None


@dataclass
class FamilyRow:
    family: str
    options: list[str]
    means: dict[str, float | None] = field(default_factory=dict)
    diffs: dict[str, float | None] = field(default_factory=dict)
    spreads: dict[str, float | None] = field(default_factory=dict)
    """Sample SD over the family's options of their mean score (None with one option)."""
    p: dict[str, float | None] = field(default_factory=dict)
    """Paired bootstrap of the family's options against the baseline, over their
    (option, seed, language) pairs."""

    @property
    def average(self) -> float | None:
        vals = [v for v in self.means.values() if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.means) else None

    @property
    def average_diff(self) -> float | None:
        vals = [v for v in self.diffs.values() if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.diffs) else None


@dataclass
class XtremeScore:
    """Best intermediate option per target (by English validation) against the baseline."""

    best_option: dict[str, str | None]
    best: dict[str, float | None]
    baseline: dict[str, float | None]

    @staticmethod
    def _mean(values: dict[str, float | None]) -> float | None:
        vals = [v for v in values.values() if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(values) else None

    @property
    def best_score(self) -> float | None:
        return self._mean(self.best)

    @property
    def baseline_score(self) -> float | None:
        return self._mean(self.baseline)


def _cell(grid: GridScores, option: Option, target: str) -> Cell | None:
    scores = grid.task_scores(option.label, target)
    if not scores:
        return None
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return Cell(mean=statistics.fmean(scores), std=std, n=len(scores))


def main_rows(grid: GridScores, *, resamples: int = 10_000, seed: int = 0) -> list[MainRow]:
    """One row per option (baseline first, then grouped by family)."""
    base = grid.baseline
    rows = []
    for option in grid.options:
        cells: dict[str, Cell | None] = {}
        for target in grid.targets:
            cell = _cell(grid, option, target)
            base_cell = _cell(grid, base, target) if base is not None else None
            if cell is not None and base_cell is not None and not option.is_baseline:
                cell.diff = cell.mean - base_cell.mean
                cell.p = paired_bootstrap(
                    grid.pairs(base.label, target),
                    grid.pairs(option.label, target),
                    resamples=resamples,
                    seed=seed,
                )
            cells[target] = cell
        rows.append(MainRow(option=option, cells=cells))
    return rows


def family_rows(
    rows: list[MainRow],
    targets: list[str],
    grid: GridScores | None = None,
    *,
    resamples: int = 10_000,
    seed: int = 0,
) -> list[FamilyRow]:
    """Mean score and difference per target over the options of each family, their
    spread over the options, and (with ``grid``) the significance against the baseline."""
    groups: dict[str, list[MainRow]] = {}
    for row in rows:
        groups.setdefault(row.option.family, []).append(row)
    base = grid.baseline if grid is not None else None
    out = []
    for family, members in groups.items():
        frow = FamilyRow(family=family, options=[m.option.label for m in members])
        for target in targets:
            cells = [m.cells[target] for m in members if m.cells[target] is not None]
            frow.means[target] = statistics.fmean(c.mean for c in cells) if cells else None
            diffs = [c.diff for c in cells if c.diff is not None]
            frow.diffs[target] = statistics.fmean(diffs) if diffs else None
            frow.spreads[target] = (
                statistics.stdev(c.mean for c in cells) if len(cells) > 1 else None
            )
            if grid is not None and base is not None and family != BASELINE:
                frow.p[target] = _family_p(grid, members, base.label, target, resamples, seed)
        out.append(frow)
    return sorted(out, key=lambda f: (f.family != BASELINE, f.family))


def _family_p(
    grid: GridScores, members: list[MainRow], base: str, target: str, resamples: int, seed: int
) -> float | None:
    """The family's options against the baseline, each option paired with the baseline
    on the same (seed, language)."""
    theirs = grid.pairs(base, target)
    mine: dict[tuple, float] = {}
    paired: dict[tuple, float] = {}
    for member in members:
        for key, value in grid.pairs(member.option.label, target).items():
            if key in theirs:
                mine[(member.option.label, *key)] = value
                paired[(member.option.label, *key)] = theirs[key]
    return paired_bootstrap(paired, mine, resamples=resamples, seed=seed) if mine else None


def xtreme_score(rows: list[MainRow], grid: GridScores) -> XtremeScore:
    """Per target, the intermediate option with the best mean English validation score
    of target training (never the test score), and its test score beside the
    baseline's. A target with no validation score (retrieval) has no choice."""
    score = XtremeScore(best_option={}, best={}, baseline={})
    for target in grid.targets:
        base = [r.cells[target] for r in rows if r.option.is_baseline and r.cells[target]]
        score.baseline[target] = base[0].mean if base else None
        candidates = [
            (validation, r.cells[target].mean, r.option.label)
            for r in rows
            if not r.option.is_baseline
            and r.cells[target] is not None
            and (validation := grid.validation_mean(r.option.label, target)) is not None
        ]
        best = max(candidates) if candidates else None
        score.best[target] = best[1] if best else None
        score.best_option[target] = best[2] if best else None
    return score


@dataclass
class AdversarialRow:
    """An adversarial option against its standard counterpart on one target."""

    option: Option
    counterpart: Option
    target: str
    diffs: dict[str, float]
    """Per language: mean over seeds of (adversarial - standard)."""
    zero_shot_diff: float | None
    p: float | None
    """Paired bootstrap over (seed, non-English language) pairs."""


def adversarial_rows(
    grid: GridScores, *, resamples: int = 10_000, seed: int = 0
) -> list[AdversarialRow]:
    rows = []
    for option in grid.options:
        counterpart = grid.standard_counterpart(option) if option.adversarial else None
        if counterpart is None:
            continue
        for target in grid.targets:
            mine = grid.pairs(option.label, target)
            theirs = grid.pairs(counterpart.label, target)
            common = set(mine) & set(theirs)
            if not common:
                continue
            by_language: dict[str, list[float]] = {}
            for key in common:
                by_language.setdefault(key[1], []).append(mine[key] - theirs[key])
            diffs = {lang: statistics.fmean(v) for lang, v in sorted(by_language.items())}
            zero_shot = [d for lang, d in diffs.items() if lang != "en"]
            foreign = {k for k in common if k[1] != "en"}
            p = paired_bootstrap(
                {k: theirs[k] for k in foreign},
                {k: mine[k] for k in foreign},
                resamples=resamples,
                seed=seed,
            )
            rows.append(
                AdversarialRow(
                    option=option,
                    counterpart=counterpart,
                    target=target,
                    diffs=diffs,
                    zero_shot_diff=statistics.fmean(zero_shot) if zero_shot else None,
                    p=p,
                )
            )
    return rows
