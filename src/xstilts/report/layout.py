"""Lay the numbers of :mod:`xstilts.report.tables` out as text tables."""

from __future__ import annotations

from xstilts.experiment.results_db import SCORE_METRIC
from xstilts.report.data import GridScores
from xstilts.report.render import PM, Table
from xstilts.report.robustness import RobustnessRow
from xstilts.report.statistics import (
    ALPHA,
    ASO_MIN_RUNS,
    ASO_THRESHOLD,
    CORRECTION_WORDS,
    Correction,
    RunComparison,
    stars,
)
from xstilts.report.tables import (
    AdversarialRow,
    Cell,
    FamilyRow,
    MainRow,
    QuestionRow,
    XtremeScore,
    main_tests,
)

DASH = "—"


class Fmt:
    """Number formatting: 3 decimals for scores in [0, 1], 1 decimal for percentages."""

    def __init__(self, rows: list[MainRow]) -> None:
        values = [abs(c.mean) for r in rows for c in r.cells.values() if c is not None]
        self.decimals = 3 if values and max(values) <= 1.0 else 1

    def num(self, value: float | None) -> str:
        return DASH if value is None else f"{value:.{self.decimals}f}"

    def diff(self, value: float | None) -> str:
        return DASH if value is None else f"{value:+.{self.decimals}f}"

    def cell(self, cell: Cell | None) -> str:
        if cell is None:
            return DASH
        text = self.num(cell.mean)
        if cell.std is not None:
            text += f" {PM} {self.num(cell.std)}"
        if cell.diff is not None:
            text += f" ({self.diff(cell.diff)}{stars(cell.test)})"
        return text

    def interval(self, test: RunComparison | None) -> str:
        if test is None or test.ci is None:
            return DASH
        return f"[{self.diff(test.ci[0])}, {self.diff(test.ci[1])}]"


def p_text(p: float | None) -> str:
    return DASH if p is None else f"{p:.3g}"


def testable(tests: list[RunComparison]) -> int:
    """How many of a table's comparisons have a p-value (two runs or more a side)."""
    return sum(1 for t in tests if t is not None and t.p is not None)


def test_words(correction: Correction, tests: int) -> str:
    """The sentence every table with comparisons carries: unit, test, correction."""
    return (
        "Unit: the run (one number per trained run: its score over the target's "
        "languages). Test: exact two-sided permutation test of the difference of means "
        "over run labels, unpaired unless two runs start from the same intermediate "
        f"checkpoint; * p < {ALPHA} after {CORRECTION_WORDS[correction].replace('-corrected', '')} "
        f"correction over the table's {tests} comparisons."
    )


def runs_words(counts: set[int]) -> str:
    return "Runs per cell: " + (", ".join(map(str, sorted(counts))) or DASH) + "."


def metric_words(metric: str) -> str:
    """How the notes name the compared per-language number."""
    if metric == SCORE_METRIC:
        return "the task score averaged over languages (QA: (EM+F1)/2)"
    return f"'{metric}' averaged over languages"


def main_table(
    rows: list[MainRow],
    targets: list[str],
    metric: str = SCORE_METRIC,
    correction: Correction = "holm",
    extra_notes: tuple[str, ...] = (),
) -> Table:
    fmt = Fmt(rows)
    body, breaks, last_family = [], [], None
    for i, row in enumerate(rows):
        if row.option.family != last_family:
            breaks.append(i)
            last_family = row.option.family
        avg = fmt.num(row.average)
        if row.average_diff is not None:
            avg += f" ({fmt.diff(row.average_diff)}{stars(row.average_test)})"
        cells = [fmt.cell(row.cells[t]) for t in targets]
        body.append([row.option.label, row.option.family, *cells, avg])
    seeds = {c.n for r in rows for c in r.cells.values() if c is not None}
    tests = main_tests(rows)
    notes = [
        f"Mean {PM} sample SD over runs of {metric_words(metric)}. In parentheses: "
        "difference to the baseline. Avg: mean over targets; its test compares per-seed "
        "averages over targets. " + runs_words(seeds),
        test_words(correction, testable(tests)),
        *extra_notes,
    ]
    return Table(
        title="Main results: intermediate option x target task",
        header=["Intermediate", "Family", *targets, "Avg"],
        rows=body,
        notes=notes,
        group_breaks=breaks,
    )


def family_table(
    families: list[FamilyRow], targets: list[str], fmt: Fmt, correction: Correction = "holm"
) -> Table:
    body = []
    for fam in families:
        cells = []
        for t in [*targets, None]:
            text = fmt.num(fam.means[t] if t else fam.average)
            spread = fam.spreads.get(t) if t else None
            if spread is not None:
                text += f" {PM} {fmt.num(spread)}"
            diff = fam.diffs[t] if t else fam.average_diff
            if diff is not None:
                text += f" ({fmt.diff(diff)}{stars(fam.tests.get(t)) if t else ''})"
            cells.append(text)
        body.append([fam.family, str(len(fam.options)), *cells])
    tests = [t for f in families for t in f.tests.values() if t is not None]
    return Table(
        title="Averages per family of the intermediate task",
        header=["Family", "Options", *targets, "Avg"],
        rows=body,
        notes=[
            f"Mean over the options of a family of their mean score {PM} its SD over the "
            "options; in parentheses the difference to the baseline. The test pools the "
            "runs of all the family's options against the baseline's runs, each counted "
            "once.",
            test_words(correction, testable(tests)),
        ],
    )


def xtreme_table(score: XtremeScore, targets: list[str], fmt: Fmt) -> Table:
    unselected = [t for t in targets if score.best_option[t] is None]
    proxied = [t for t in targets if score.rule.get(t) == "proxy"]
    best = [f"{fmt.num(score.best[t])} ({score.best_option[t] or DASH})" for t in targets]
    diff = None
    if score.best_score is not None and score.baseline_score is not None:
        diff = score.best_score - score.baseline_score
    rows = [
        ["baseline", *[fmt.num(score.baseline[t]) for t in targets], fmt.num(score.baseline_score)],
        ["best intermediate per target", *best, fmt.num(score.best_score)],
        [
            "difference",
            *[fmt.diff(_sub(score.best[t], score.baseline[t])) for t in targets],
            fmt.diff(diff),
        ],
    ]
    notes = [
        "Score: mean over target tasks. The option of a target is the one with the best "
        "mean validation score of its runs: target training's English validation, or the "
        "benchmark's dev set where the target is zero-shot (BUCC); never a test score."
    ]
    if proxied:
        notes.append(
            f"{', '.join(proxied)}: no validation score of its own (Tatoeba has no dev set); "
            "chosen by proxy, the best mean validation score over the grid's other targets."
        )
    if unselected:
        notes.append(f"{', '.join(unselected)}: no validation score at all, so no choice.")
    return Table(
        title="XTREME-style score: best intermediate option per target",
        header=["System", *targets, "Score"],
        rows=rows,
        notes=notes,
    )


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


COMPARISON_HEADER = ["Difference", "95% CI", "p", "p corrected", "eps_min", "Runs"]


def comparison_cells(test: RunComparison | None, fmt: Fmt) -> list[str]:
    """The columns every comparison table shares."""
    if test is None:
        return [DASH] * len(COMPARISON_HEADER)
    runs = f"{test.n_a} vs {test.n_b}" + (" paired" if test.paired else "")
    eps = DASH if test.eps_min is None else f"{test.eps_min:.2f}"
    return [
        fmt.diff(test.diff) + stars(test),
        fmt.interval(test),
        p_text(test.p),
        p_text(test.p_adjusted),
        eps,
        runs,
    ]


def aso_words() -> str:
    return (
        "eps_min: Almost Stochastic Order (Dror et al. 2019) of the better-looking option "
        f"over the other; it decides (dominance at eps_min < {ASO_THRESHOLD}) only with "
        f"{ASO_MIN_RUNS}+ runs a side, below which the rule is not calibrated. 95% CI: "
        "percentile bootstrap over runs, too narrow with few runs."
    )


def question_table(
    rows: list[QuestionRow], fmt: Fmt, metric: str, correction: Correction = "holm"
) -> Table:
    body = [
        [row.target, row.option, row.reference or DASH, row.how, *comparison_cells(row.test, fmt)]
        for row in rows
    ]
    tests = [r.test for r in rows if r.test is not None]
    return Table(
        title="The study's question: its comparisons",
        header=["Target", "Option", "Against", "Chosen", *COMPARISON_HEADER],
        rows=body,
        notes=[
            f"Compared by {metric_words(metric)}. 'best on validation': the reference is "
            "the listed option with the best mean validation score on that target, chosen "
            "before any test score is read.",
            test_words(correction, testable(tests)),
            aso_words(),
        ],
    )


def baseline_comparisons_table(rows: list[MainRow], targets: list[str], fmt: Fmt) -> Table:
    """Every main-table comparison in full: interval, raw and corrected p, ASO."""
    body = []
    for row in rows:
        for target in [*targets, None]:
            test = row.cells[target].test if target and row.cells[target] else None
            if target is None:
                test = row.average_test
            if test is not None:
                body.append([row.option.label, target or "Avg", *comparison_cells(test, fmt)])
    return Table(
        title="Each option against the baseline, in full",
        header=["Option", "Target", *COMPARISON_HEADER],
        rows=body,
        notes=["The comparisons of the main table, with its correction.", aso_words()],
    )


def adversarial_table(
    rows: list[AdversarialRow], fmt: Fmt, correction: Correction = "holm"
) -> Table:
    languages = sorted({lang for row in rows for lang in row.diffs}, key=lambda g: (g != "en", g))
    body = []
    for row in rows:
        cells = [fmt.diff(row.diffs.get(lang)) for lang in languages]
        test = row.test
        zero_shot = fmt.diff(row.zero_shot_diff) + stars(test)
        body.append(
            [
                row.option.label,
                row.counterpart.label,
                row.target,
                *cells,
                zero_shot,
                fmt.interval(test),
                p_text(test.p_adjusted if test else None),
            ]
        )
    tests = [r.test for r in rows if r.test is not None]
    return Table(
        title="Adversarial training against standard training",
        header=["Option", "Standard", "Target", *languages, "Non-English", "95% CI", "p corr."],
        rows=body,
        notes=[
            "Per language: mean over runs of the adversarial option minus that of standard "
            "training. Non-English: the same for each run's mean over the non-English "
            "languages, the number tested.",
            test_words(correction, testable(tests)),
        ],
    )


def fallbacks_table(grid: GridScores) -> Table | None:
    """MAD-X runs that evaluated a language with another language's adapter (or none)."""
    body = []
    for (label, target, seed), info in sorted(grid.runs.items(), key=lambda kv: repr(kv[0])):
        for lang, used in sorted(info.fallbacks.items()):
            body.append([label, target, str(seed), lang, used])
    if not body:
        return None
    return Table(
        title="Language-adapter fallbacks",
        header=["Option", "Target", "Seed", "Language", "Adapter used"],
        rows=body,
        notes=[
            "Languages without a language adapter of their own, evaluated with the "
            "fallback adapter (language_adapters.fallback); 'none': no language adapter."
        ],
    )


def parameters_table(rows: list[MainRow], grid: GridScores, fmt: Fmt) -> Table:
    """Each option's adapter setup and parameters trained beside its average score."""
    body = []
    for row in rows:
        label = row.option.label
        trained = [_count(grid.trained.get((label, phase))) for phase in ("intermediate", "target")]
        setup = row.option.adapters or "full fine-tuning"
        body.append([label, setup, *trained, fmt.num(row.average)])
    return Table(
        title="Parameters trained per option",
        header=["Option", "Adapters", "Intermediate trained", "Target trained", "Avg"],
        rows=body,
        notes=[
            f"Avg: mean over targets of {metric_words(grid.metric)}. Parameters trained in "
            "each phase (heads included; a range where targets differ in their heads).",
        ],
    )


def _count(values: set[int] | None) -> str:
    if not values:
        return DASH
    low, high = min(values), max(values)
    return _short(low) if low == high else f"{_short(low)}–{_short(high)}"


def _short(count: int) -> str:
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


ROBUSTNESS_COLUMNS = {
    "mean": "Mean",
    "seed_sd": "SD over seeds",
    "worst": "Worst language",
    "language_sd": "SD over languages",
    "gap": "en - zero-shot gap",
}


def robustness_table(
    rows: list[RobustnessRow], fmt: Fmt, metric: str, correction: Correction = "holm"
) -> Table:
    """Per option and target: each robustness statistic, its difference to the
    baseline and whether that difference is significant after correction."""
    body, breaks, last = [], [], None
    for i, row in enumerate(rows):
        if row.target != last:
            breaks.append(i)
            last = row.target
        cells = []
        for name in ROBUSTNESS_COLUMNS:
            value = row.values.get(name)
            text = fmt.num(value)
            if name == "worst" and row.worst_language:
                text += f" ({row.worst_language} lowest on average)"
            if row.diffs.get(name) is not None:
                text += f" ({fmt.diff(row.diffs[name])}{stars(row.tests.get(name))})"
            cells.append(text)
        body.append([row.target, row.option.label, str(row.n), *cells])
    tests = [t for r in rows for t in r.tests.values() if t is not None]
    return Table(
        title="Robustness: spread over seeds and languages",
        header=["Target", "Option", "Runs", *ROBUSTNESS_COLUMNS.values()],
        rows=body,
        notes=[
            f"Per option and target, from {metric_words(metric)}: the mean run score; the "
            "sample SD over seeds of the run scores; the mean over runs of each run's "
            "lowest language score; the mean over runs of each run's SD over languages; "
            "the mean over runs of English minus the run's mean over the other languages "
            "(read beside the mean: a small gap can also mean equally poor everywhere). "
            "In parentheses: difference to the baseline. The SD over seeds is tested by a "
            "permutation test of each run's absolute deviation from its option's median "
            "(Brown-Forsythe); the others as one number per run.",
            test_words(correction, testable(tests)),
        ],
        group_breaks=breaks,
    )
