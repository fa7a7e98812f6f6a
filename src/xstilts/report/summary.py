"""A few computed sentences that answer a grid's question, for the top of its report.

Every number comes from the tables below it; nothing here is written by hand.
"""

from __future__ import annotations

from xstilts.report.layout import Fmt, metric_words
from xstilts.report.robustness import RobustnessRow
from xstilts.report.tables import AdversarialRow, MainRow, XtremeScore


def _p(p: float | None) -> str:
    return "" if p is None else f" (p = {p:.3g})"


def summary(
    rows: list[MainRow],
    score: XtremeScore,
    robustness: list[RobustnessRow],
    adversarial: list[AdversarialRow],
    metric: str,
    fmt: Fmt,
) -> list[str]:
    lines = [f"Compared by {metric_words(metric)}."]
    targets = list(score.best)
    for target in targets:
        scored = [r for r in rows if not r.option.is_baseline and r.cells[target] is not None]
        if not scored:
            continue
        top = max(scored, key=lambda r: r.cells[target].mean)  # type: ignore[union-attr]
        cell = top.cells[target]
        assert cell is not None
        if cell.diff is not None:
            lead = (
                f"the highest mean is {top.option.label}'s"
                if cell.diff > 0
                else f"no option beats the baseline; the closest is {top.option.label}"
            )
            lines.append(
                f"{target}: {lead}, {fmt.num(cell.mean)}, {fmt.diff(cell.diff)} against the "
                f"baseline{_p(cell.p)}."
            )
    if score.best_score is not None and score.baseline_score is not None:
        chosen = ", ".join(f"{t} {score.best_option[t]}" for t in targets)
        lines.append(
            f"Choosing the option per target on English validation ({chosen}) gives an "
            f"XTREME-style score of {fmt.num(score.best_score)} against the baseline's "
            f"{fmt.num(score.baseline_score)} "
            f"({fmt.diff(score.best_score - score.baseline_score)})."
        )
    lines.extend(_robustness_lines(robustness, fmt))
    for row in adversarial:
        if row.zero_shot_diff is not None:
            lines.append(
                f"{row.target}: {row.option.label} against {row.counterpart.label} changes "
                f"the non-English mean by {fmt.diff(row.zero_shot_diff)}{_p(row.p)}."
            )
    return lines


def _robustness_lines(rows: list[RobustnessRow], fmt: Fmt) -> list[str]:
    """Per target: the option with the lowest SD over seeds and the one with the
    smallest English-to-zero-shot gap, each against the baseline."""
    lines = []
    for target in dict.fromkeys(row.target for row in rows):
        members = [r for r in rows if r.target == target]
        base = next((r for r in members if r.option.is_baseline), None)
        others = [r for r in members if not r.option.is_baseline]
        if base is None or not others:
            continue
        for name, words in (("seed_sd", "SD over seeds"), ("gap", "en - zero-shot gap")):
            known = [r for r in others if r.values.get(name) is not None]
            if not known or base.values.get(name) is None:
                continue
            best = min(known, key=lambda r: abs(r.values[name]))  # type: ignore[arg-type]
            lines.append(
                f"{target}: the smallest {words} is {best.option.label}'s, "
                f"{fmt.num(best.values[name])} against the baseline's "
                f"{fmt.num(base.values[name])}{_p(best.p.get(name))}."
            )
    return lines
