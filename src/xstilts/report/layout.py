"""Lay the numbers of :mod:`xstilts.report.tables` out as text tables."""

from __future__ import annotations

from xstilts.experiment.results_db import SCORE_METRIC
from xstilts.report.data import GridScores
from xstilts.report.render import PM, Table
from xstilts.report.robustness import RobustnessRow
from xstilts.report.significance import ALPHA, RESAMPLES, stars
from xstilts.report.tables import AdversarialRow, Cell, FamilyRow, MainRow, XtremeScore

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
            text += f" ({self.diff(cell.diff)}{stars(cell.p)})"
        return text


def metric_words(metric: str) -> str:
    """How the notes name the compared per-language number."""
    if metric == SCORE_METRIC:
        return "the task score averaged over languages (QA: (EM+F1)/2)"
    return f"'{metric}' averaged over languages"


def main_table(rows: list[MainRow], targets: list[str], metric: str = SCORE_METRIC) -> Table:
    fmt = Fmt(rows)
    body, breaks, last_family = [], [], None
    for i, row in enumerate(rows):
        if row.option.family != last_family:
            breaks.append(i)
            last_family = row.option.family
        avg = fmt.num(row.average)
        if row.average_diff is not None:
            avg += f" ({fmt.diff(row.average_diff)})"
        cells = [fmt.cell(row.cells[t]) for t in targets]
        body.append([row.option.label, row.option.family, *cells, avg])
    seeds = sorted({c.n for r in rows for c in r.cells.values() if c is not None})
    notes = [
        f"Mean {PM} sample standard deviation (ddof=1) over seeds (n = "
        f"{', '.join(map(str, seeds))}) of {metric_words(metric)}. "
        "In parentheses: difference to the baseline; "
        f"* p < {ALPHA} in a paired bootstrap over (seed, language) pairs "
        f"({RESAMPLES:,} resamples).",
    ]
    return Table(
        title="Main results: intermediate option x target task",
        header=["Intermediate", "Family", *targets, "Avg"],
        rows=body,
        notes=notes,
        group_breaks=breaks,
    )


def family_table(families: list[FamilyRow], targets: list[str], fmt: Fmt) -> Table:
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
                text += f" ({fmt.diff(diff)}{stars(fam.p.get(t)) if t else ''})"
            cells.append(text)
        body.append([fam.family, str(len(fam.options)), *cells])
    return Table(
        title="Averages per family of the intermediate task",
        header=["Family", "Options", *targets, "Avg"],
        rows=body,
        notes=[
            f"Mean over the options of a family of their mean score {PM} its SD over the "
            "options (difference to the baseline; * p < "
            f"{ALPHA} in a paired bootstrap over the family's (option, seed, language) "
            "pairs against the baseline's same (seed, language))."
        ],
    )


def xtreme_table(score: XtremeScore, targets: list[str], fmt: Fmt) -> Table:
    unselected = [t for t in targets if score.best_option[t] is None]
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
    return Table(
        title="XTREME-style score: best intermediate option per target",
        header=["System", *targets, "Score"],
        rows=rows,
        notes=[
            "Score: mean over target tasks. The best option of a target is the one with the "
            "best mean English validation score of target training, never chosen on test"
            + (
                f"; {', '.join(unselected)} record no validation score (no choice, no score)."
                if unselected
                else "."
            )
        ],
    )


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def adversarial_table(rows: list[AdversarialRow], fmt: Fmt) -> Table:
    languages = sorted({lang for row in rows for lang in row.diffs}, key=lambda g: (g != "en", g))
    body = []
    for row in rows:
        cells = [fmt.diff(row.diffs.get(lang)) for lang in languages]
        zero_shot = fmt.diff(row.zero_shot_diff) + stars(row.p)
        body.append([row.option.label, row.counterpart.label, row.target, *cells, zero_shot])
    return Table(
        title="Adversarial training against standard training",
        header=["Option", "Standard", "Target", *languages, "Non-English"],
        rows=body,
        notes=[
            "Per language: mean over seeds of (adversarial - standard) score. Non-English: "
            f"their mean; * p < {ALPHA} in a paired bootstrap over (seed, non-English "
            f"language) pairs ({RESAMPLES:,} resamples).",
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


def robustness_table(rows: list[RobustnessRow], fmt: Fmt, metric: str) -> Table:
    """Per option and target: each robustness statistic, its difference to the
    baseline and whether that difference is significant."""
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
                text += f" {row.worst_language}"
            if row.diffs.get(name) is not None:
                text += f" ({fmt.diff(row.diffs[name])}{stars(row.p.get(name))})"
            cells.append(text)
        body.append([row.target, row.option.label, *cells])
    return Table(
        title="Robustness: spread over seeds and languages",
        header=["Target", "Option", *ROBUSTNESS_COLUMNS.values()],
        rows=body,
        notes=[
            f"Per option and target, from {metric_words(metric)} per (seed, language): the "
            "mean; the sample SD over seeds of the task score; the lowest per-language mean "
            "(and its language); the sample SD over languages of the per-language means; "
            "English minus the mean of the other languages. In parentheses: difference to "
            f"the baseline, * p < {ALPHA} in a paired bootstrap over seeds and languages.",
        ],
        group_breaks=breaks,
    )
