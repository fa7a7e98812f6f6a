"""A grid seen as a selection problem: for each target, its intermediate options, each
with the experiment of its first seed (what estimators read) and its target runs over
all seeds (what the estimates are checked against)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xstilts.config import ExperimentConfig, TrainingConfig, parse_config
from xstilts.experiment.grid import GridConfig, Plan, plan_grid
from xstilts.experiment.resolve import ResolvedExperiment, resolve
from xstilts.formats import get_format
from xstilts.tasks.spec import TaskSpec


@dataclass
class Candidate:
    option: str
    raw_config: ExperimentConfig
    """The run's config as the grid wrote it (what the pipeline resolves)."""
    experiment: ResolvedExperiment
    """The (option, target) experiment of the grid's first seed."""
    inter_dir: Path | None
    """Its intermediate phase's folder (None for the baseline)."""
    run_dirs: list[Path] = field(default_factory=list)
    """Its target runs, one per seed."""

    @property
    def config(self) -> ExperimentConfig:
        return self.experiment.config

    @property
    def is_baseline(self) -> bool:
        return self.inter_dir is None


@dataclass
class TargetCandidates:
    target: str
    task: TaskSpec | None
    """What estimators read: the target's training data, or for a target that does not
    train (retrieval) its first target stage's; None when it has neither."""
    training: TrainingConfig | None
    """The training settings of ``task`` (its caps)."""
    candidates: list[Candidate]


def grid_candidates(
    grid: GridConfig, out_root: Path, source: str = "grid"
) -> list[TargetCandidates]:
    """Every target of the grid with its options, in the grid's order."""
    return candidates_of(plan_grid(grid, out_root, source), grid, out_root, source)


def candidates_of(
    plan: Plan, grid: GridConfig, out_root: Path, source: str = "grid"
) -> list[TargetCandidates]:
    first_seed = grid.grid.seeds[0]
    by_target: dict[str, dict[str, Candidate]] = {t: {} for t in grid.grid.targets}
    for run in plan.targets:
        assert run.target is not None
        options = by_target[run.target]
        if run.option not in options and run.seed == first_seed:
            where = f"{source} (option '{run.option}', target '{run.target}')"
            config = parse_config(yaml.safe_load(run.config_yaml), source=where)
            experiment = resolve(config)
            name = experiment.intermediate_name
            inter_dir = out_root / "intermediate" / name if name else None
            options[run.option] = Candidate(run.option, config, experiment, inter_dir)
    for run in plan.targets:
        assert run.target is not None
        by_target[run.target][run.option].run_dirs.append(out_root / "runs" / run.name)
    found = []
    for target, options in by_target.items():
        ordered = [options[o] for o in grid.grid.intermediate if o in options]
        task, training = _estimation_task(ordered[0].experiment)
        found.append(TargetCandidates(target, task, training, ordered))
    return found


def _estimation_task(
    experiment: ResolvedExperiment,
) -> tuple[TaskSpec | None, TrainingConfig | None]:
    if get_format(experiment.target.format).trainable:
        return experiment.target, experiment.config.target.training
    if experiment.stages:
        return experiment.stages[0], experiment.config.target.stages[0].training
    return None, None
