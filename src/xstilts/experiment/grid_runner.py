"""Run a grid plan through an executor, with a progress display and a closing report."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xstilts.errors import DiskFull, XstiltsError
from xstilts.experiment import disk
from xstilts.experiment.executors import Executor, JobResult, LocalExecutor
from xstilts.experiment.grid import GridConfig, Plan, plan_grid, save_report_spec

log = logging.getLogger(__name__)

DB_FILE = "results.sqlite"
MAX_LISTED = 40


def make_executor(
    grid: GridConfig, out_root: Path, kind: str | None, max_parallel: int | None
) -> Executor:
    spec = grid.grid
    kind = kind or spec.executor
    if kind == "local":
        return LocalExecutor(max_parallel or spec.max_parallel)
    try:
        from xstilts.experiment import cluster
    except ImportError as err:
        raise XstiltsError(
            f"--executor {kind} needs the cluster extra: pip install 'xstilts[cluster]' ({err})"
        ) from None
    if kind == "ray":
        return cluster.RayExecutor(address=spec.ray_address)
    if kind == "slurm":
        slurm = spec.slurm
        return cluster.SlurmExecutor(
            folder=out_root / "slurm",
            partition=slurm.partition,
            time_minutes=slurm.time_minutes,
            gpus_per_node=slurm.gpus_per_node,
            cpus_per_task=slurm.cpus_per_task,
        )
    raise XstiltsError(f"--executor: '{kind}' is not one of local, ray, slurm")


def print_plan(plan: Plan, console: Console, parallel: int = 1) -> None:
    table = Table(title="grid plan")
    for column in ("runs", "total", "finished", "to run", "failed last time"):
        table.add_column(column, justify="left" if column == "runs" else "right")
    phases = [
        ("language adapter", plan.language_adapters),
        ("intermediate", plan.intermediate),
        ("target", plan.targets),
    ]
    for label, runs in phases:
        if label == "language adapter" and not runs:
            continue
        finished = sum(r.finished for r in runs)
        failed = sum(r.last_error is not None for r in runs)
        table.add_row(label, str(len(runs)), str(finished), str(len(runs) - finished), str(failed))
    console.print(table)
    console.print(_languages_line(plan), highlight=False)
    console.print(_cost_line(plan), highlight=False)
    console.print(disk_line(plan, parallel), highlight=False)
    pending = [r for r in plan.runs if not r.finished]
    if pending:
        listing = Table(title=f"to run ({len(pending)})")
        for column in ("kind", "option", "target", "seed", "run", "last attempt"):
            listing.add_column(column, overflow="fold")
        for run in pending[:MAX_LISTED]:
            last = f"failed: {run.last_error}" if run.last_error else "-"
            listing.add_row(run.kind, run.option, run.target or "-", str(run.seed), run.name, last)
        if len(pending) > MAX_LISTED:
            listing.add_row("...", f"{len(pending) - MAX_LISTED} more", "", "", "", "")
        console.print(listing)


def _languages_line(plan: Plan) -> str:
    """What the target runs evaluate: which benchmark's languages, how many in all."""
    targets = {run.target: run for run in plan.targets}
    languages = {lang for run in plan.targets for lang in run.languages}
    benchmarks = sorted({str(run.benchmark) for run in plan.targets})
    chosen = ", ".join(benchmarks).replace("None", "none (every language of each task)")
    return (
        f"evaluation: {len(languages)} languages over {len(targets)} targets; "
        f"evaluation.benchmark: {chosen}"
    )


def _cost_line(plan: Plan) -> str:
    """The plan's estimated GPU-hours (all runs, and those still to run)."""
    known = [r for r in plan.runs if r.gpu_hours is not None]
    total = sum(r.gpu_hours for r in known)  # type: ignore[misc]
    left = sum(r.gpu_hours for r in known if not r.finished)  # type: ignore[misc]
    unknown = len(plan.runs) - len(known)
    text = (
        f"estimated GPU-hours: {total:,.1f} in all, {left:,.1f} still to run (one A100, bf16, "
        "30% of peak; see xstilts/experiment/costs.py)"
    )
    return text + (f"; {unknown} runs without an estimate" if unknown else "")


def _plan_disk(plan: Plan) -> tuple[int, int, str]:
    """The plan's disk: kept when finished, most more while one run trains, and the
    runtime.keep of its runs."""
    estimates = [r.disk_estimate for r in plan.runs if r.disk_estimate is not None]
    kept = sum(e.kept for e in estimates)
    peak = max((e.peak for e in estimates), default=0)
    return kept, peak, ", ".join(sorted({r.keep for r in plan.runs})) or "results"


def disk_line(plan: Plan, parallel: int = 1) -> str:
    """What the whole plan needs on disk under its runs' runtime.keep."""
    kept, peak, keeps = _plan_disk(plan)
    counts = ", ".join(
        f"{len(runs)} {label}"
        for label, runs in (
            ("language adapter", plan.language_adapters),
            ("intermediate", plan.intermediate),
            ("target", plan.targets),
        )
        if runs
    )
    return f"{disk.describe(kept, peak, keeps, parallel)}; {counts} runs"


def _full_disk(error: str, plan: Plan, parallel: int) -> str:
    """A job's DiskFull error (its text: ``xstilts.errors.DiskFull: ...``), with what the
    plan needs."""
    reason = DiskFull(error.split(": ", 1)[-1].removeprefix(DiskFull.PREFIX))
    return disk.full_message(reason, *_plan_disk(plan), parallel)


def run_grid(
    grid: GridConfig,
    out_root: Path,
    console: Console,
    *,
    executor: str | None = None,
    max_parallel: int | None = None,
    dry_run: bool = False,
    source: str = "grid",
    narrow: Callable[[Plan], Plan] | None = None,
) -> list[JobResult]:
    """Plan, print the plan, and (unless a dry run) run what is not finished yet.
    ``narrow``: what trims the plan first (a grid's budget mode, xstilts/selection)."""
    plan = plan_grid(grid, out_root, source, dry_run=dry_run)
    if narrow is not None:
        plan = narrow(plan)
    parallel = max_parallel or grid.grid.max_parallel
    print_plan(plan, console, parallel)
    jobs = plan.jobs(out_root, grid.grid.resources)
    if dry_run:
        return []
    save_report_spec(grid, out_root)
    if not jobs:
        console.print("nothing to run: every run of the grid is finished")
        return []
    runner = make_executor(grid, out_root, executor, max_parallel)
    from xstilts.experiment.results_db import index_run

    with Progress(
        TextColumn("[bold]grid"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        bar = progress.add_task("", total=len(jobs))

        def on_done(result: JobResult) -> None:
            if result.ok and result.results:
                index_run(out_root / DB_FILE, result.results)
            state = "done" if result.ok else "FAILED"
            progress.update(bar, advance=1, description=f"{state}: {result.name}")
            if not result.ok and DiskFull.__name__ in (result.error or ""):
                # Every job after it would fail the same way: stop the grid here.
                raise XstiltsError(_full_disk(result.error or "", plan, parallel))

        results = runner.run(jobs, out_root, on_done)
    _report(results, console)
    return results


def _report(results: list[JobResult], console: Console) -> None:
    counts = Counter("ok" if r.ok else "failed" for r in results)
    console.print(f"grid finished: {counts['ok']} runs done, {counts['failed']} failed")
    for result in results:
        if not result.ok:
            console.print(
                f"  {result.name}: {result.error}\n    log: {result.log_path}", highlight=False
            )
    if counts["failed"]:
        console.print("run the same command again to retry the failed runs")
