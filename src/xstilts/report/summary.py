"""A few computed sentences that answer a grid's question, for the top of its report.

Every number comes from the tables below it; nothing here is written by hand. Which
option a sentence names is chosen on validation scores, never on test scores; a
difference is called detectable only when its corrected p-value is below alpha.
"""

from __future__ import annotations

from collections import defaultdict

from xstilts.report.data import GridScores
from xstilts.report.layout import Fmt, metric_words
from xstilts.report.robustness import RobustnessRow
from xstilts.report.statistics import (
    CORRECTION_WORDS,
    Correction,
    RunComparison,
    pooled_sd,
    power_words,
)
from xstilts.report.tables import (
    AdversarialRow,
    MainRow,
    QuestionRow,
    XtremeScore,
    main_tests,
)

ROBUSTNESS_WORDS = {
    "seed_sd": "SD over seeds",
    "worst": "worst-language score",
    "language_sd": "SD over languages",
    "gap": "en - zero-shot gap",
}


def result_words(test: RunComparison | None, fmt: Fmt) -> str:
    """'+1.2 [-0.3, +2.5], p = 0.008 (corrected 0.03): detectable' and the like."""
    if test is None:
        return "not tested (runs missing on one side)"
    text = fmt.diff(test.diff)
    if test.ci is not None:
        text += f" [{fmt.diff(test.ci[0])}, {fmt.diff(test.ci[1])}]"
    if test.p is None:
        return text + ", not testable with these runs"
    text += f", p = {test.p:.3g}"
    if test.p_adjusted is not None and test.p_adjusted != test.p:
        text += f" (corrected {test.p_adjusted:.3g})"
    return text + (
        ": a detectable difference" if test.significant else ": no detectable difference"
    )


def summary(
    grid: GridScores,
    rows: list[MainRow],
    score: XtremeScore,
    robustness: list[RobustnessRow],
    adversarial: list[AdversarialRow],
    questions: list[QuestionRow],
    fmt: Fmt,
    *,
    question: str | None = None,
    correction: Correction = "holm",
) -> list[str]:
    lines = [f"Question: {question}"] if question else []
    counts = sorted({c.n for r in rows for c in r.cells.values() if c is not None})
    lines.append(
        f"Compared by {metric_words(grid.metric)}; the unit is the run "
        f"({', '.join(map(str, counts))} per option and target), tested by an exact "
        f"permutation test, {CORRECTION_WORDS[correction]} within each table."
    )
    sd = pooled_sd([grid.task_scores(o.label, t) for o in grid.options for t in grid.targets])
    lines.append(power_words(main_tests(rows), sd, correction, fmt.num))
    lines.extend(_question_lines(questions, fmt))
    lines.extend(_chosen_lines(grid, rows, score, fmt))
    if score.best_score is not None and score.baseline_score is not None:
        chosen = ", ".join(f"{t} {score.best_option[t]}" for t in grid.targets)
        lines.append(
            f"Choosing the option per target on validation ({chosen}) gives an XTREME-style "
            f"score over {_targets(len(grid.targets))} of {fmt.num(score.best_score)} "
            f"against the baseline's {fmt.num(score.baseline_score)} "
            f"({fmt.diff(score.best_score - score.baseline_score)})."
        )
    lines.extend(_robustness_lines(robustness))
    for row in adversarial:
        lines.append(
            f"{row.target}: {row.option.label} against {row.counterpart.label}, non-English "
            f"mean: {result_words(row.test, fmt)}."
        )
    return lines


def _targets(count: int) -> str:
    return "its one target" if count == 1 else f"all {count} targets"


def _question_lines(rows: list[QuestionRow], fmt: Fmt) -> list[str]:
    """The study's comparisons: one sentence per comparison against a chosen option,
    one per (option, target) against a list of named options."""
    lines = []
    named: dict[tuple[str, str], list[QuestionRow]] = defaultdict(list)
    for row in rows:
        if row.how == "named":
            named[(row.option, row.target)].append(row)
        elif row.reference is None:
            lines.append(f"{row.target}: {row.option} has no reference to compare with.")
        else:
            lines.append(
                f"{row.target}: {row.option} against {row.reference} ({row.how}): "
                f"{result_words(row.test, fmt)}."
            )
    for (option, target), members in named.items():
        if len(members) <= 2:
            lines.extend(
                f"{target}: {option} against {m.reference}: {result_words(m.test, fmt)}."
                for m in members
            )
            continue
        better = [m.reference for m in members if m.test and m.test.significant and m.test.diff > 0]
        worse = [m.reference for m in members if m.test and m.test.significant and m.test.diff < 0]
        rest = len(members) - len(better) - len(worse)
        parts = []
        if better:
            parts.append(f"detectably better than {', '.join(map(str, better))}")
        if worse:
            parts.append(f"detectably worse than {', '.join(map(str, worse))}")
        parts.append(f"no detectable difference from the other {rest}")
        lines.append(f"{target}: {option} against each of {len(members)}: {'; '.join(parts)}.")
    return lines


def _chosen_lines(grid: GridScores, rows: list[MainRow], score: XtremeScore, fmt: Fmt) -> list[str]:
    """Per target: the intermediate option chosen on validation (the XTREME-style
    score's choice) and its test result against the baseline (never the option with
    the best test score)."""
    lines = []
    by_label = {r.option.label: r for r in rows}
    for target in grid.targets:
        chosen = score.best_option.get(target)
        if chosen is None:
            continue
        cell = by_label[chosen].cells[target]
        assert cell is not None
        how = (
            "on validation"
            if score.rule.get(target) == "validation"
            else "by proxy (validation of other targets)"
        )
        lines.append(
            f"{target}: the option chosen {how} is {chosen}, {fmt.num(cell.mean)} on test; "
            f"against the baseline {result_words(cell.test, fmt)}."
        )
    return lines


def _robustness_lines(rows: list[RobustnessRow]) -> list[str]:
    """Per target: which robustness statistics differ detectably from the baseline's
    (after correction), or that none does."""
    lines = []
    for target in dict.fromkeys(row.target for row in rows):
        members = [r for r in rows if r.target == target and not r.option.is_baseline]
        tested = [
            r for r in members if any(t is not None and t.p is not None for t in r.tests.values())
        ]
        if not tested:
            continue
        found = [
            f"{r.option.label}'s {words} ({'lower' if (r.diffs.get(name) or 0) < 0 else 'higher'})"
            for r in tested
            for name, words in ROBUSTNESS_WORDS.items()
            if (test := r.tests.get(name)) is not None and test.significant
        ]
        if found:
            lines.append(
                f"{target}: robustness differing detectably from the baseline: {', '.join(found)}."
            )
        else:
            lines.append(
                f"{target}: no option's SD over seeds, worst-language score, SD over "
                "languages or en - zero-shot gap differs detectably from the baseline's."
            )
    return lines
