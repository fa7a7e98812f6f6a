"""``xstilts select``: print each target's ranking, and with ``--evaluate`` how the
rankings agree with the grid's measured scores."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xstilts.experiment.grid import GridConfig
from xstilts.io import atomic_write_json
from xstilts.selection.check import (
    MEASURES,
    METRICS,
    RANDOM,
    TargetCheck,
    check_all,
    evaluation_path,
    mean_metrics,
    to_json,
    total_share,
)
from xstilts.selection.result import SelectionResult
from xstilts.selection.select import TargetRanking, rank_grid
from xstilts.selection.settings import SelectionSettings


def run_select(
    grid: GridConfig,
    out_root: Path,
    methods: list[str],
    settings: SelectionSettings,
    console: Console,
    *,
    evaluate: bool = False,
    source: str = "grid",
) -> SelectionResult:
    """Rank each target's options with each method, print the rankings and, with
    ``evaluate``, check them against the grid's finished runs."""
    wanted = list(methods)
    if evaluate and "size" not in wanted:
        wanted.append("size")  # a baseline of the evaluation
    groups, rankings = rank_grid(grid, out_root, wanted, settings, source)
    asked = {method: rankings[method] for method in dict.fromkeys(methods)}
    for method in methods:
        for ranking in rankings[method]:
            console.print(ranking_table(ranking))
    if not evaluate:
        return SelectionResult(asked)
    checks = check_all(groups, rankings)
    evaluation = to_json(checks)
    atomic_write_json(evaluation_path(out_root), evaluation)
    result = SelectionResult(asked, evaluation, evaluation_path(out_root))
    if not any(checks.values()):
        console.print("no target has two or more finished options: nothing to evaluate against")
        return result
    for measure in MEASURES:
        console.print(evaluation_table(checks, measure, methods))
    console.print(
        "regret in points of the target's score (mean over seeds); NDCG@3 gains: the "
        "measured score above the target's worst option; cost: the estimator's measured "
        "seconds over the target runs' (every option and seed it ranks, from their logs); "
        f"load: the 1-minute load average while estimating, on {os.cpu_count()} cores "
        "(seconds grow with it; the runs' load is not recorded)",
        highlight=False,
    )
    console.print(f"written: {evaluation_path(out_root)}", highlight=False)
    return result


def ranking_table(ranking: TargetRanking) -> Table:
    table = Table(title=f"{ranking.method}: {ranking.target}")
    for column in ("rank", "option", "estimate", "seconds", "note"):
        table.add_column(column, justify="left" if column in ("option", "note") else "right")
    if ranking.skipped:
        table.add_row("-", "-", "-", "-", ranking.skipped)
        return table
    for place, item in enumerate(ranking.ranked, 1):
        value = item.estimate.value
        table.add_row(
            str(place) if value is not None else "-",
            item.option,
            "-" if value is None else f"{value:.4g}",
            f"{item.estimate.seconds:.1f}",
            item.estimate.note,
        )
    table.caption = f"{ranking.seconds:.1f}s in all"
    return table


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def evaluation_table(
    checks: dict[str, list[TargetCheck]], measure: str, methods: list[str]
) -> Table:
    table = Table(title=f"estimators against measured scores ({measure})")
    table.add_column("method", overflow="fold")
    table.add_column("target", overflow="fold")
    for column in (*METRICS, "cost s", "runs s", "cost %", "load"):
        table.add_column(column, justify="right", min_width=len(column))
    shown = [*methods, *(m for m in ("size", RANDOM) if m not in methods)]
    for method in shown:
        found = checks.get(method, [])
        for check in found:
            table.add_row(
                method,
                check.target,
                *(_number(check.metrics[measure][m]) for m in METRICS),
                _number(check.cost_seconds, 1),
                _number(check.runs_seconds, 0),
                _number(None if check.cost_share is None else 100 * check.cost_share),
                _number(check.load, 1),
            )
        if found:
            means = mean_metrics(found)[measure]
            share = total_share(found)
            costs = [c.cost_seconds or 0.0 for c in found]
            runs = [c.runs_seconds for c in found]
            table.add_row(
                f"[bold]{method}[/]",
                "[bold]mean[/]",
                *(_number(means[m]) for m in METRICS),
                _number(sum(costs), 1),
                "-" if None in runs else _number(sum(r for r in runs if r), 0),
                _number(None if share is None else 100 * share),
                "",
                end_section=True,
            )
    return table
