"""The numbers of the paper's tables: main table, family averages, XTREME score, the
study's own comparisons and adversarial training against standard training.

A cell is the mean ± sample standard deviation (``ddof=1``; none with one run) over
runs of the task score (each run's mean over the target's languages), its difference
to the reference option and the comparison of their runs
(:mod:`xstilts.report.statistics`), corrected for the table's number of comparisons.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from xstilts.report.data import BASELINE, GridScores, Option
from xstilts.report.statistics import (
    Correction,
    RunComparison,
    compare_runs,
    corrected,
    selection_permutation_p,
)


@dataclass
class Cell:
    mean: float
    std: float | None
    n: int
    diff: float | None = None
    test: RunComparison | None = None


@dataclass
class MainRow:
    option: Option
    cells: dict[str, Cell | None]
    average_test: RunComparison | None = None
    """Per-seed averages over all targets against the baseline's."""

    @property
    def average(self) -> float | None:
        means = [c.mean for c in self.cells.values() if c is not None]
        return statistics.fmean(means) if means and len(means) == len(self.cells) else None

    @property
    def average_diff(self) -> float | None:
        diffs = [c.diff for c in self.cells.values() if c is not None and c.diff is not None]
        return statistics.fmean(diffs) if diffs and len(diffs) == len(self.cells) else None


def _cell(grid: GridScores, option: Option, target: str) -> Cell | None:
    scores = grid.task_scores(option.label, target)
    if not scores:
        return None
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return Cell(mean=statistics.fmean(scores), std=std, n=len(scores))


def compare_options(
    grid: GridScores,
    option: str,
    reference: str,
    target: str,
    languages: list[str] | None = None,
    *,
    seed: int = 0,
) -> RunComparison | None:
    """``option`` against ``reference`` on ``target``, one number per run (its mean
    over ``languages``, default the target's common ones); paired only when their
    runs share intermediate checkpoints one to one."""
    mine = grid.run_scores(option, target, languages)
    theirs = grid.run_scores(reference, target, languages)
    pairs = grid.shared_starts(option, reference, target)
    if pairs is not None and all(a in mine and b in theirs for a, b in pairs) and pairs:
        return compare_runs(
            [mine[a] for a, _ in pairs], [theirs[b] for _, b in pairs], paired=True, seed=seed
        )
    return compare_runs(list(mine.values()), list(theirs.values()), seed=seed)


def seed_averages(grid: GridScores, label: str) -> list[float]:
    """Per seed, the mean of the option's run scores over every target (seeds that
    have a run of every target): the unit of the average column."""
    per_target = [grid.run_scores(label, t) for t in grid.targets]
    seeds = set.intersection(*(set(p) for p in per_target)) if per_target else set()
    return [statistics.fmean(p[s] for p in per_target) for s in sorted(seeds, key=repr)]


def main_rows(grid: GridScores, correction: Correction = "holm", *, seed: int = 0) -> list[MainRow]:
    """One row per option (baseline first, then grouped by family); every option's
    cells and average compared with the baseline, corrected over the whole table."""
    base = grid.baseline
    rows = []
    for option in grid.options:
        cells: dict[str, Cell | None] = {}
        for target in grid.targets:
            cell = _cell(grid, option, target)
            if cell is not None and base is not None and not option.is_baseline:
                test = compare_options(grid, option.label, base.label, target, seed=seed)
                if test is not None:
                    cell.diff, cell.test = test.diff, test
            cells[target] = cell
        row = MainRow(option=option, cells=cells)
        if base is not None and not option.is_baseline and len(grid.targets) > 1:
            row.average_test = compare_runs(
                seed_averages(grid, option.label), seed_averages(grid, base.label), seed=seed
            )
        rows.append(row)
    _correct_main(rows, grid.targets, correction)
    return rows


def _correct_main(rows: list[MainRow], targets: list[str], correction: Correction) -> None:
    slots: list[tuple[MainRow, str | None]] = []
    tests: list[RunComparison | None] = []
    for row in rows:
        for target in targets:
            cell = row.cells[target]
            if cell is not None and cell.test is not None:
                slots.append((row, target))
                tests.append(cell.test)
        if row.average_test is not None:
            slots.append((row, None))
            tests.append(row.average_test)
    for (row, target), test in zip(slots, corrected(tests, correction), strict=True):
        if target is None:
            row.average_test = test
        else:
            cell = row.cells[target]
            assert cell is not None
            cell.test = test


def main_tests(rows: list[MainRow]) -> list[RunComparison]:
    """Every comparison the main table prints."""
    tests = [c.test for r in rows for c in r.cells.values() if c is not None and c.test]
    return tests + [r.average_test for r in rows if r.average_test is not None]


@dataclass
class FamilyRow:
    family: str
    options: list[str]
    means: dict[str, float | None] = field(default_factory=dict)
    diffs: dict[str, float | None] = field(default_factory=dict)
    spreads: dict[str, float | None] = field(default_factory=dict)
    """Sample SD over the family's options of their mean score (None with one option)."""
    tests: dict[str, RunComparison | None] = field(default_factory=dict)
    """The family's runs (all its options) against the baseline's runs."""

    @property
    def average(self) -> float | None:
        vals = [v for v in self.means.values() if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.means) else None

    @property
    def average_diff(self) -> float | None:
        vals = [v for v in self.diffs.values() if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.diffs) else None


def family_rows(
    rows: list[MainRow],
    targets: list[str],
    grid: GridScores | None = None,
    correction: Correction = "holm",
    *,
    seed: int = 0,
) -> list[FamilyRow]:
    """Mean score and difference per target over the options of each family, their
    spread over the options, and (with ``grid``) the family's runs against the
    baseline's runs, each baseline run counted once."""
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
                pooled = [
                    v for m in members for v in grid.run_scores(m.option.label, target).values()
                ]
                frow.tests[target] = compare_runs(
                    pooled, list(grid.run_scores(base.label, target).values()), seed=seed
                )
        out.append(frow)
    slots = [(f, t) for f in out for t in targets if f.tests.get(t) is not None]
    fixed = corrected([f.tests[t] for f, t in slots], correction)
    for (frow, target), test in zip(slots, fixed, strict=True):
        frow.tests[target] = test
    return sorted(out, key=lambda f: (f.family != BASELINE, f.family))


@dataclass
class XtremeScore:
    """Best intermediate option per target (by English validation) against the baseline."""

    best_option: dict[str, str | None]
    best: dict[str, float | None]
    baseline: dict[str, float | None]
    rule: dict[str, str] = field(default_factory=dict)
    """How each target's option was chosen: 'validation' (its own English validation
    score) or 'proxy' (mean validation over the targets that have one)."""

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


def choose_on_validation(
    grid: GridScores, candidates: list[str], target: str
) -> tuple[str | None, str]:
    """The candidate with the best mean validation score on ``target`` and the rule
    used: its own validation score (target training's English validation, or a
    benchmark dev set such as BUCC's) when candidates have one, else the proxy: the
    best mean validation over the grid's other targets where every candidate has one.
    Ties go to the earlier candidate; no test score is ever read."""
    own = {c: grid.validation_mean(c, target) for c in candidates}
    if any(v is not None for v in own.values()):
        known = {c: v for c, v in own.items() if v is not None}
        return max(known, key=lambda c: (known[c], -candidates.index(c))), "validation"
    proxy_targets = [
        t
        for t in grid.targets
        if t != target and all(grid.validation_mean(c, t) is not None for c in candidates)
    ]
    if not candidates or not proxy_targets:
        return None, "none"
    proxies = {
        c: statistics.fmean(grid.validation_mean(c, t) or 0.0 for t in proxy_targets)
        for c in candidates
    }
    return max(proxies, key=lambda c: (proxies[c], -candidates.index(c))), "proxy"


def xtreme_score(rows: list[MainRow], grid: GridScores) -> XtremeScore:
    """Per target, the intermediate option chosen on validation (never on test; see
    :func:`choose_on_validation`), and its test score beside the baseline's."""
    score = XtremeScore(best_option={}, best={}, baseline={})
    by_label = {r.option.label: r for r in rows}
    for target in grid.targets:
        base = [r.cells[target] for r in rows if r.option.is_baseline and r.cells[target]]
        score.baseline[target] = base[0].mean if base else None
        candidates = [
            r.option.label
            for r in rows
            if not r.option.is_baseline and r.option.tasks and r.cells[target] is not None
        ]
        chosen, rule = choose_on_validation(grid, candidates, target)
        cell = by_label[chosen].cells[target] if chosen is not None else None
        score.best[target] = cell.mean if cell is not None else None
        score.best_option[target] = chosen
        score.rule[target] = rule
    return score


@dataclass
class QuestionRow:
    """One comparison a study's report asks for (report.comparisons)."""

    option: str
    reference: str | None
    target: str
    how: str
    """'named' or 'best on validation' / 'best by proxy' among the listed options."""
    test: RunComparison | None


def question_rows(
    grid: GridScores, comparisons: list[Any], correction: Correction = "holm", *, seed: int = 0
) -> list[QuestionRow]:
    """The study's own comparisons (a grid's report.comparisons), per target."""
    out: list[QuestionRow] = []
    labels = {o.label for o in grid.options}
    for spec in comparisons:
        against = [spec.against] if isinstance(spec.against, str) else list(spec.against)
        against = [grid.baseline.label if a == BASELINE and grid.baseline else a for a in against]
        if spec.option not in labels:
            continue
        present = [a for a in against if a in labels]
        for target in grid.targets:
            if spec.choose == "best":
                chosen, rule = choose_on_validation(grid, present, target)
                how = {"validation": "best on validation", "proxy": "best by proxy"}.get(
                    rule, "no choice"
                )
                pairs = [(chosen, how)]
            else:
                pairs = [(a, "named") for a in present]
            for reference, how in pairs:
                test = (
                    compare_options(grid, spec.option, reference, target, seed=seed)
                    if reference is not None
                    else None
                )
                if test is not None and spec.choose == "best" and how == "best on validation":
                    test = _with_selection(grid, spec.option, present, target, test, seed)
                out.append(QuestionRow(spec.option, reference, target, how, test))
    fixed = corrected([r.test for r in out], correction)
    for row, test in zip(out, fixed, strict=True):
        row.test = test
    return out


def _with_selection(
    grid: GridScores,
    option: str,
    candidates: list[str],
    target: str,
    test: RunComparison,
    seed: int,
) -> RunComparison:
    """The comparison against a candidate chosen on validation, its p-value from the
    permutation test that makes the choice again in every relabeling."""

    def runs(label: str) -> list[tuple[float, float]]:
        scores = grid.run_scores(label, target)
        return [
            (grid.validation[(label, target, s)], v)
            for s, v in scores.items()
            if (label, target, s) in grid.validation
        ]

    p, min_p = selection_permutation_p(runs(option), [runs(c) for c in candidates], seed=seed)
    return replace(test, p=p, min_p=min_p, paired=False)


@dataclass
class AdversarialRow:
    """An adversarial option against its standard counterpart on one target."""

    option: Option
    counterpart: Option
    target: str
    diffs: dict[str, float]
    """Per language: mean over runs of the adversarial option minus that of standard."""
    zero_shot_diff: float | None
    test: RunComparison | None
    """Runs' non-English means, adversarial against standard."""


def adversarial_rows(
    grid: GridScores, correction: Correction = "holm", *, seed: int = 0
) -> list[AdversarialRow]:
    rows = []
    for option in grid.options:
        counterpart = grid.standard_counterpart(option) if option.adversarial else None
        if counterpart is None:
            continue
        for target in grid.targets:
            languages = grid.languages(target)
            diffs = {}
            for lang in languages:
                mine = grid.run_scores(option.label, target, [lang])
                theirs = grid.run_scores(counterpart.label, target, [lang])
                if mine and theirs:
                    diffs[lang] = statistics.fmean(mine.values()) - statistics.fmean(
                        theirs.values()
                    )
            if not diffs:
                continue
            foreign = [lang for lang in languages if lang != "en"]
            test = (
                compare_options(grid, option.label, counterpart.label, target, foreign, seed=seed)
                if foreign
                else None
            )
            rows.append(
                AdversarialRow(
                    option=option,
                    counterpart=counterpart,
                    target=target,
                    diffs=diffs,
                    zero_shot_diff=test.diff if test is not None else None,
                    test=test,
                )
            )
    fixed = corrected([r.test for r in rows], correction)
    for row, test in zip(rows, fixed, strict=True):
        row.test = test
    return rows
