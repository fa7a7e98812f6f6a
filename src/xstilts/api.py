"""The Python API: the xstilts commands as functions, for notebooks and scripts.

Each function runs the code the command of the same name runs (the CLI calls these
functions), takes the same configs and overrides, and raises the same one-sentence
`XstiltsError` where the command prints ``error: ...``:

    import xstilts

    result = xstilts.run("configs/xstilts_mnli_xnli.yaml", out="runs",
                         overrides={"target.training.epochs": 1})
    result.scores                      # {"en": 84.1, "de": 77.0, ...}
    grid = xstilts.run_grid("configs/studies/paper.yaml", out="runs/paper")
    frame = xstilts.results("runs/paper")          # a pandas DataFrame, long form
    xstilts.write_report("runs/paper", out="report/paper")

Logging: nothing here configures logging. Each run writes its log lines to its folder
(``run.log``, ``train.log``) as with the CLI; to see them as they come, configure the
``xstilts`` logger (``logging.basicConfig(level=logging.INFO)`` does). Grids and
selection print their plan, progress and tables on a rich console (``console``; pass
``rich.console.Console(quiet=True)`` for silence).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from xstilts.config import ExperimentConfig
from xstilts.config_input import ConfigPayload, ConfigSource, Overrides, read_config
from xstilts.errors import DiskFull, XstiltsError
from xstilts.processes import world_size
from xstilts.selection.result import SelectionResult

if TYPE_CHECKING:
    import pandas

    from xstilts.experiment.executors import JobResult
    from xstilts.experiment.grid import Plan, PlannedRun
    from xstilts.experiment.pipeline import RunOutcome

__all__ = [
    "ConfigPayload",
    "ExperimentResult",
    "GridResult",
    "SelectionResult",
    "XstiltsError",
    "read_config",
    "results",
    "run",
    "run_grid",
    "select",
    "write_report",
]

CORRECTIONS = ("holm", "bh", "none")
RESULT_COLUMNS = {
    "option": "intermediate_option",
    "intermediate_tasks": "intermediate_tasks",
    "target": "target",
    "seed": "seed",
    "language": "language",
    "metric": "metric",
    "value": "value",
}
"""The columns of `results` that every grid has, from the results index's."""
SETTING_COLUMNS = ("model", "intermediate_examples", "adversarial", "adapters", "benchmark")
"""The run settings `results` adds where they differ between a grid's runs."""


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ExperimentResult:
    """A finished experiment: its scores and where its folders are."""

    scores: Mapping[str, float]
    """Language -> the target task's main metric (what ``xstilts run`` prints)."""
    metric: str
    """The main metric's name, e.g. ``accuracy``, ``f1``."""
    metrics: Mapping[str, Mapping[str, float]]
    """Language -> every metric recorded for it (QA: ``exact_match`` and ``f1``)."""
    average: float | None
    """Mean of ``scores`` over the languages."""
    average_zero_shot: float | None
    """Mean of ``scores`` over the languages other than English."""
    run_dir: Path
    """The run folder: its config, log, evaluations and ``results.json``."""
    intermediate_dir: Path | None
    """The intermediate phase's folder, shared by every run that starts from it; None
    for a run with no intermediate phase."""
    language_adapter_dirs: Mapping[str, Path] = field(default_factory=dict)
    """Language -> its MAD-X language adapter's folder (none without ``language_adapters``)."""
    results: Mapping[str, Any] = field(default_factory=dict)
    """The whole ``results.json`` of the run."""


@dataclass(frozen=True)
class GridResult:
    """What `run_grid` planned and ran. A failed run does not raise: the others go
    on, as on the command line; see `ok` and `failed`, or call `check`."""

    grid_dir: Path
    """The grid's folder (``out``): its runs, ``results.sqlite`` and ``report.json``."""
    planned: tuple[PlannedRun, ...]
    """Every run of the grid's plan (budget mode: the kept ones), ``finished`` as found
    before this call."""
    jobs: tuple[JobResult, ...]
    """The runs this call ran (none in a dry run): ``name``, ``ok``, ``error``,
    ``log_path``, and for target runs ``results`` (their ``results.json``)."""

    @property
    def ok(self) -> bool:
        """Whether every run this call ran finished."""
        return all(job.ok for job in self.jobs)

    @property
    def failed(self) -> tuple[JobResult, ...]:
        """The runs that failed (running again retries them)."""
        return tuple(job for job in self.jobs if not job.ok)

    def check(self) -> GridResult:
        """Raise if a run failed; else return the result itself.

        Raises:
            XstiltsError: naming the failed runs and the first error.
        """
        if self.ok:
            return self
        first = self.failed[0]
        raise XstiltsError(
            f"{len(self.failed)} of {len(self.jobs)} grid runs failed, first {first.name}: "
            f"{first.error} (log: {first.log_path}); run the grid again to retry them"
        )

    def results(self, metric: str | None = None) -> pandas.DataFrame:
        """The grid's results, as `xstilts.results` gives them."""
        return results(self.grid_dir, metric=metric)


# ---------------------------------------------------------------------------
# Checks shared with the command line


def check_out_folder(out: Path) -> None:
    """``out`` is a folder, or nothing yet."""
    if out.exists() and not out.is_dir():
        raise XstiltsError(f"--out {out}: not a folder (it is a file); give a folder for the runs")


def check_max_parallel(max_parallel: int | None) -> None:
    """``--max-parallel`` is unset, or 1 or more."""
    if max_parallel is not None and max_parallel < 1:
        raise XstiltsError(f"--max-parallel {max_parallel}: give at least 1 run at a time")


def grid_rows(grid_dir: str | Path) -> list[dict[str, Any]]:
    """The long-format rows of a grid's results index (``xstilts results --csv``)."""
    from xstilts.experiment.results_db import load_table

    folder = Path(grid_dir)
    if not folder.is_dir():
        raise XstiltsError(f"no grid folder at {folder}")
    return load_table(folder)


# ---------------------------------------------------------------------------
# Running


def run(
    config: ConfigSource,
    out: str | Path = "runs",
    overrides: Overrides = None,
    restart_phase: str | None = None,
) -> ExperimentResult:
    """Run one experiment: optional intermediate training, target training, evaluation.

    As ``xstilts run``: a run already finished is read back, an interrupted one resumes,
    and an intermediate phase another run trained is reused. The run logs to its
    folder's ``run.log``; configure the ``xstilts`` logger to see the lines here too.

    Args:
        config: A YAML file, a mapping of its keys, an
            `ExperimentConfig` or a `ConfigPayload`.
        out: The root folder of runs.
        overrides: ``["target.training.epochs=2"]`` as ``--set`` takes them, or
            ``{"target.training.epochs": 2}``.
        restart_phase: ``"intermediate"`` (and so the target) or ``"target"``: train
            that phase again from the start, throwing its earlier work away.

    Returns:
        The run's per-language scores, its metric and its folders.

    Raises:
        XstiltsError: an invalid config or override, a grid config (run those with
            `run_grid`), bad data, a full disk.
    """
    out = Path(out)
    check_out_folder(out)
    loaded = read_config(config, overrides)
    if loaded.is_grid:
        raise XstiltsError(
            f"{loaded.source}: a grid config (it has a 'grid' section); run it with "
            "xstilts.run_grid"
        )
    experiment = loaded.experiment()
    outcome = run_experiment(experiment, out, restart_phase)
    return _experiment_result(experiment, outcome, out)


def run_experiment(
    experiment: ExperimentConfig, out: Path, restart_phase: str | None = None
) -> RunOutcome:
    """The pipeline's run, with a full disk told as what the run needs."""
    from xstilts.experiment import disk
    from xstilts.experiment.pipeline import run_experiment as run_pipeline
    from xstilts.experiment.resolve import resolve

    try:
        return run_pipeline(experiment, out, restart_phase=restart_phase)
    except DiskFull as err:
        need = disk.experiment_disk(resolve(experiment))
        keep = experiment.runtime.keep
        raise XstiltsError(disk.full_message(err, need.kept, need.peak, keep)) from None


def _experiment_result(
    experiment: ExperimentConfig, outcome: RunOutcome, out: Path
) -> ExperimentResult:
    payload = outcome.results
    metric = payload["metric"]
    metrics = {
        lang: {k: v for k, v in values.items() if _is_number(v) and k != "num_examples"}
        for lang, values in payload["languages"].items()
    }
    inter = payload.get("intermediate_run")
    adapters: dict[str, Path] = {}
    if experiment.language_adapters is not None:
        from xstilts.experiment.pipeline import language_dirs
        from xstilts.experiment.resolve import resolve

        adapters = language_dirs(resolve(experiment), out)
    return ExperimentResult(
        scores={lang: values[metric] for lang, values in metrics.items() if metric in values},
        metric=metric,
        metrics=metrics,
        average=payload.get("average"),
        average_zero_shot=payload.get("average_zero_shot"),
        run_dir=outcome.run_dir,
        intermediate_dir=out / "intermediate" / inter if inter else None,
        language_adapter_dirs=adapters,
        results=payload,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def run_grid(
    config: ConfigSource,
    out: str | Path = "runs",
    overrides: Overrides = None,
    executor: str | None = None,
    max_parallel: int | None = None,
    dry_run: bool = False,
    *,
    console: Console | None = None,
) -> GridResult:
    """Run a grid: intermediate options x target tasks x seeds, each intermediate run
    trained once and shared by the targets that start from it.

    As ``xstilts run`` with a grid config: finished runs are reused, interrupted ones
    resume, failed ones are retried; with ``selection.top_k`` (budget mode) each target
    is trained only from its top-K options and the baseline. A run that fails does not
    stop the others, nor raise: see `GridResult.ok`, or call
    `GridResult.check`.

    Args:
        config: A grid config: a YAML file, a mapping of its keys or a
            `ConfigPayload`.
        out: The grid's folder.
        overrides: ``["scale=cpu"]`` as ``--set`` takes them, or ``{"scale": "cpu"}``.
        executor: ``local``, ``ray`` or ``slurm``; default: the grid's ``grid.executor``.
        max_parallel: Local executor: runs at once (worker processes); default: the
            grid's ``grid.max_parallel``.
        dry_run: Only plan: `GridResult.planned` says what is finished and what
            would run.
        console: Where the plan, the progress and the closing report go; default:
            standard output.

    Returns:
        The plan and the result of each run this call ran.

    Raises:
        XstiltsError: an invalid config or override, an experiment config (run those
            with `run`), a full disk (which stops the grid).
    """
    from xstilts.experiment import grid_runner

    out = Path(out)
    check_out_folder(out)
    check_max_parallel(max_parallel)
    loaded = read_config(config, overrides)
    if not loaded.is_grid:
        raise XstiltsError(
            f"{loaded.source}: not a grid config (no 'grid' section); run an experiment "
            "with xstilts.run"
        )
    if world_size() > 1:
        raise XstiltsError(
            "a grid is not run under torchrun or accelerate launch: run it as one "
            "process and set grid.resources.gpus to launch each of its jobs on that "
            "many GPUs"
        )
    grid = loaded.grid()
    console = console or Console()
    budget = None
    if grid.selection is not None and grid.selection.top_k is not None:
        from xstilts.selection.budget import budget_plan

        budget = functools.partial(
            budget_plan, grid, out_root=out, console=console, source=loaded.source, dry_run=dry_run
        )
    plans: list[Plan] = []

    def narrow(plan: Plan) -> Plan:
        plan = budget(plan) if budget is not None else plan
        plans.append(plan)
        return plan

    jobs = grid_runner.run_grid(
        grid,
        out,
        console,
        executor=executor,
        max_parallel=max_parallel,
        dry_run=dry_run,
        source=loaded.source,
        narrow=narrow,
    )
    return GridResult(out, tuple(plans[-1].runs), tuple(jobs))


# ---------------------------------------------------------------------------
# Results and reports


def results(grid_dir: str | Path, metric: str | None = None) -> pandas.DataFrame:
    """A grid's results as a pandas DataFrame in long form: one row per run, language
    and metric, from the same index ``xstilts results --csv`` writes.

    Columns: ``option`` (the grid's label of the intermediate option), ``intermediate_tasks``
    (joined by ``+``; empty for the baseline), ``target``, ``seed``, ``language``,
    ``metric``, ``value``; then those of ``model``, ``intermediate_examples``,
    ``adversarial``, ``adapters`` and ``benchmark`` that differ between the grid's runs;
    last ``run_id``. Besides each task's own metrics, ``score`` is the XTREME task score
    of each language ((EM + F1) / 2 for QA, else the main metric).

    Args:
        grid_dir: The grid's folder.
        metric: Keep only this metric's rows (e.g. ``score``): one row per run and language.

    Returns:
        The long table; pivot it as you need, e.g.
        ``frame.pivot_table(index="option", columns="language", values="value")``.

    Raises:
        XstiltsError: no grid folder there, or pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError:
        raise XstiltsError("xstilts.results needs pandas: pip install pandas") from None
    rows = grid_rows(grid_dir)
    varying = [c for c in SETTING_COLUMNS if len({row[c] for row in rows}) > 1]
    if metric is not None:
        rows = [row for row in rows if row["metric"] == metric]
    columns = {**RESULT_COLUMNS, **{c: c for c in varying}, "run_id": "run_id"}
    records = [{name: row[source] for name, source in columns.items()} for row in rows]
    return pd.DataFrame.from_records(records, columns=list(columns))


def write_report(
    grid_dir: str | Path,
    out: str | Path = "report",
    target: str | None = None,
    metric: str | None = None,
    correction: str | None = None,
) -> list[Path]:
    """Write a grid's report: the paper's tables (Markdown, CSV, LaTeX), its figures
    and one HTML page, as ``xstilts report``.

    Args:
        grid_dir: The grid's folder.
        out: The folder for the report's files.
        target: The target task of the per-language figure; default: the first.
        metric: Compare options by this per-language metric (e.g. ``f1``); default:
            the grid's ``report.metric``, else the XTREME task score.
        correction: ``holm``, ``bh`` or ``none`` within each table; default: the grid's
            ``report.correction``, else ``holm``.

    Returns:
        The paths written.

    Raises:
        XstiltsError: no finished runs with scores, an unknown target or correction.
    """
    from xstilts.report import write_report as write

    if correction not in (None, *CORRECTIONS):
        raise XstiltsError(f"--correction {correction}: expected holm, bh or none")
    out = Path(out)
    check_out_folder(out)
    return write(
        grid_dir,
        out,
        target_for_languages=target,
        metric=metric,
        correction=correction,  # type: ignore[arg-type]
    )


def select(
    config: ConfigSource,
    out: str | Path = "runs",
    methods: str | Sequence[str] | None = None,
    evaluate: bool = False,
    overrides: Overrides = None,
    max_examples: int | None = None,
    fewshot_steps: int | None = None,
    *,
    console: Console | None = None,
) -> SelectionResult:
    """Rank each target's intermediate options with transferability estimates, before
    (or instead of) training the target from each of them, as ``xstilts select``.

    Estimates are kept under ``out/selection``: asking again costs nothing. Estimators
    that read intermediate models train the intermediate phases they need first (and
    the grid reuses them).

    Args:
        config: A grid config: a YAML file, a mapping of its keys or a
            `ConfigPayload`.
        out: The grid's folder.
        methods: ``logme``, ``semb``, ``textemb``, ``fewshot`` or ``size``, a list of
            them or a comma-separated string; default: the grid's ``selection.method``,
            else ``logme``.
        evaluate: Check the rankings against the grid's finished runs (Spearman,
            NDCG@3, regret@1/@3, beside the size and random baselines, and the cost).
        overrides: Grid keys to override, as for `run_grid`.
        max_examples: Training examples each estimator reads per dataset; default:
            the grid's ``selection.max_examples``, else 1000.
        fewshot_steps: ``fewshot``: target training steps; default: the grid's
            ``selection.fewshot_steps``, else 10.
        console: Where the ranking tables go; default: standard output.

    Returns:
        Each method's ranking of each target's options and, with ``evaluate``, the
        evaluation (also written to ``out/selection/evaluation.json``).

    Raises:
        XstiltsError: an invalid config, an experiment config, an unknown method.
    """
    from xstilts.selection.command import run_select
    from xstilts.selection.settings import SelectionSettings

    out = Path(out)
    check_out_folder(out)
    loaded = read_config(config, overrides)
    if not loaded.is_grid:
        raise XstiltsError(
            f"{loaded.source}: not a grid config (no 'grid' section); select ranks a grid"
        )
    grid = loaded.grid()
    settings = grid.selection or SelectionSettings()
    changes = {"max_examples": max_examples, "fewshot_steps": fewshot_steps}
    for key, value in changes.items():
        if value is not None and value < 1:
            raise XstiltsError(f"--{key.replace('_', '-')} {value}: give at least 1")
    settings = settings.model_copy(update={k: v for k, v in changes.items() if v is not None})
    if methods is None:
        methods = [settings.method]
    elif isinstance(methods, str):
        methods = [methods]
    chosen = [m.strip() for item in methods for m in item.split(",")]
    return run_select(
        grid, out, chosen, settings, console or Console(), evaluate=evaluate, source=loaded.source
    )
