"""Experiment grids: intermediate options x target tasks x seeds, planned as a DAG of jobs.

An intermediate run depends only on (model, intermediate option, seed, data,
runtime): it is trained once and reused by every target task that starts from
it (retrieval targets read its encoder directly). Each run is the directory
named after the hash of its resolved config, so planning is a look at the disk:
finished runs are not run again, interrupted ones resume.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xstilts.config import parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment import costs, disk, evaluation_records, run_folder
from xstilts.experiment.evaluation_records import EvaluationKey
from xstilts.experiment.executors import Job, JobKind
from xstilts.experiment.grid_config import GridConfig, Resources, parse_grid
from xstilts.experiment.pipeline import LANGUAGE_ADAPTERS_DIR, language_dirs
from xstilts.experiment.report_spec import REPORT_SPEC_FILE
from xstilts.experiment.resolve import resolve, with_samples
from xstilts.io import atomic_write_json
from xstilts.tasks import TaskRegistry, load_registry
from xstilts.train.loop import phase_result

PHASE_FOLDERS: dict[str, str] = {
    "language_adapter": LANGUAGE_ADAPTERS_DIR,
    "intermediate": "intermediate",
    "target": "runs",
}


@dataclass
class PlannedRun:
    name: str
    kind: JobKind
    option: str
    target: str | None
    seed: int
    finished: bool
    config_yaml: str
    depends_on: tuple[str, ...] = ()
    last_error: str | None = None
    """Why the last attempt failed, when it did (from the run folder's status)."""
    gpu_hours: float | None = None
    """Estimated GPU-hours (experiment/costs.py); None where no estimate exists."""
    disk_estimate: disk.RunDisk | None = None
    """Estimated disk under its runtime.keep (experiment/disk.py)."""
    keep: str = "results"
    """Its runtime.keep."""
    languages: tuple[str, ...] = ()
    """A target run's evaluation languages."""
    benchmark: str | None = None
    """A target run's evaluation.benchmark."""


@dataclass
class Plan:
    runs: list[PlannedRun]

    @property
    def language_adapters(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.kind == "language_adapter"]

    @property
    def intermediate(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.kind == "intermediate"]

    @property
    def targets(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.kind == "target"]

    def jobs(self, out_root: Path, resources: Resources) -> list[Job]:
        """Jobs for the runs still to do, language adapters and intermediates first;
        finished work is no job."""
        pending = {r.name for r in self.runs if not r.finished}
        jobs = []
        for run in [*self.language_adapters, *self.intermediate, *self.targets]:
            if run.finished:
                continue
            depends = tuple(name for name in run.depends_on if name in pending)
            folder = PHASE_FOLDERS[run.kind]
            log_name = "run.log" if run.kind == "target" else "train.log"
            jobs.append(
                Job(
                    name=run.name,
                    kind=run.kind,
                    config_yaml=run.config_yaml,
                    log_path=out_root / folder / run.name / log_name,
                    depends_on=depends,
                    cpus=resources.cpus,
                    gpus=resources.gpus,
                )
            )
        return jobs


def plan_grid(
    grid: GridConfig, out_root: Path, source: str = "grid", *, dry_run: bool = False
) -> Plan:
    """Expand the grid into runs and look on disk for the finished ones. A dry run
    plans without label files that are not there yet (see ``resolve``)."""
    spec = grid.grid
    unknown = sorted(set(spec.option_settings) - set(spec.intermediate))
    if unknown:
        raise XstiltsError(f"{source}: grid.option_settings names unknown options {unknown}")
    check_report_options(grid, source)
    language_adapters: dict[str, PlannedRun] = {}
    intermediates: dict[str, PlannedRun] = {}
    targets: list[PlannedRun] = []
    registries: dict[tuple[Path, ...], TaskRegistry] = {}
    for option, section in spec.intermediate.items():
        for seed in spec.seeds:
            for target in spec.targets:
                payload = _merge(
                    grid.base,
                    spec.option_settings.get(option, {}),
                    spec.target_settings.get(target, {}),
                )
                payload["seed"] = seed
                payload["grid_option"] = option
                payload["grid_name"] = grid.name or Path(source).stem
                payload.setdefault("target", {})["task"] = target
                if section is None:
                    payload.pop("intermediate", None)
                else:
                    payload["intermediate"] = _merge(payload.get("intermediate", {}), section)
                where = f"{source} (option '{option}', target '{target}', seed {seed})"
                config = with_samples(parse_config(payload, source=where))
                files = tuple(config.data.task_files)
                if files not in registries:
                    registries[files] = load_registry(files)
                experiment = resolve(config, registries[files], planning=dry_run)
                # The keys the grid set, not a full dump: a full dump marks every key as
                # set and the run, reading it, would ignore the task profile.
                config_yaml = config.to_yaml(only_set=True)
                adapter_dirs = language_dirs(experiment, out_root)
                for lang, folder in adapter_dirs.items():
                    if folder.name not in language_adapters:
                        done = phase_result(folder).is_file()
                        language_adapters[folder.name] = PlannedRun(
                            folder.name,
                            "language_adapter",
                            lang,
                            None,
                            config.language_adapters.seed,  # type: ignore[union-attr]
                            done,
                            config_yaml,
                            last_error=None if done else _last_error(folder),
                            gpu_hours=costs.language_adapter_gpu_hours(experiment),
                            disk_estimate=disk.language_adapter_disk(experiment),
                            keep=config.runtime.keep,
                        )
                needs = tuple(folder.name for folder in adapter_dirs.values())
                inter_name = experiment.intermediate_name
                if inter_name is not None and inter_name not in intermediates:
                    inter_dir = out_root / "intermediate" / inter_name
                    done = phase_result(inter_dir).is_file()
                    intermediates[inter_name] = PlannedRun(
                        inter_name,
                        "intermediate",
                        option,
                        None,
                        seed,
                        done,
                        config_yaml,
                        depends_on=needs,
                        last_error=None if done else _last_error(inter_dir),
                        gpu_hours=costs.intermediate_gpu_hours(experiment),
                        disk_estimate=disk.intermediate_disk(experiment),
                        keep=config.runtime.keep,
                    )
                evaluation = config.evaluation
                run_dir = out_root / "runs" / experiment.run_name
                finished = evaluation_records.is_complete(
                    run_dir,
                    EvaluationKey(evaluation.split, evaluation.max_examples),
                    experiment.languages,
                    evaluation.benchmark,
                )
                targets.append(
                    PlannedRun(
                        experiment.run_name,
                        "target",
                        option,
                        target,
                        seed,
                        finished,
                        config_yaml,
                        depends_on=(*needs, *([inter_name] if inter_name else [])),
                        last_error=None if finished else _last_error(run_dir),
                        gpu_hours=costs.target_gpu_hours(experiment),
                        disk_estimate=disk.target_disk(experiment),
                        keep=config.runtime.keep,
                        languages=tuple(experiment.languages),
                        benchmark=evaluation.benchmark,
                    )
                )
    return Plan([*language_adapters.values(), *intermediates.values(), *targets])


def check_report_options(grid: GridConfig, source: str = "grid") -> None:
    """Every option label the report section names is an option of the grid ('baseline'
    also names the grid's baseline), so a typo fails before any work, not in the report."""
    report, options = grid.report, set(grid.grid.intermediate)
    named: list[tuple[str, str]] = []
    if report.baseline is not None:
        named.append(("report.baseline", report.baseline))
    for index, comparison in enumerate(report.comparisons):
        against = comparison.against
        named.append((f"report.comparisons[{index}].option", comparison.option))
        for label in [against] if isinstance(against, str) else against:
            named.append((f"report.comparisons[{index}].against", label))
    for key, label in named:
        if label not in options and label != "baseline":
            known = ", ".join(options)
            raise XstiltsError(f"{source}: {key} '{label}' is no option of the grid ({known})")


def _last_error(folder: Path) -> str | None:
    status = run_folder.read_status(folder)
    return status.get("error") if status and status.get("state") == "failed" else None


def save_report_spec(grid: GridConfig, out_root: Path) -> None:
    """Keep the grid's report section beside its runs, for ``xstilts report``."""
    out_root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_root / REPORT_SPEC_FILE, grid.report.model_dump(mode="json"))


def load_grid(path: Path) -> GridConfig:
    payload = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return parse_grid(payload, str(path))


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts: later layers win, sections merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged
