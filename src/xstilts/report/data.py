"""Per-language task scores of a grid, keyed by intermediate option, target and seed."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.experiment.results_db import SCORE_METRIC, load_table

BASELINE = "baseline"
MULTI = "multi"


@cache
def task_family(name: str) -> str:
    """Family of an intermediate task from the catalog or the shipped samples' stand-in
    tasks; ``other`` when unknown."""
    from xstilts.samples import stand_in_tasks
    from xstilts.tasks import load_registry

    registry = load_registry()
    if name in registry:
        return registry.get(name).family
    stand_ins = {task["name"]: task["family"] for task in stand_in_tasks()["tasks"]}
    return stand_ins.get(name, "other")


def option_family(tasks: tuple[str, ...]) -> str:
    families = {task_family(t) for t in tasks}
    if not families:
        return BASELINE
    return families.pop() if len(families) == 1 else MULTI


@dataclass(frozen=True)
class Option:
    """One row of the main table: an intermediate choice (and dataset size, if varied)."""

    name: str
    tasks: tuple[str, ...]
    examples: int | None
    family: str
    adversarial: str = ""
    """Which phases train adversarially ('' for standard training), from results.json."""
    adapters: str = ""
    """The adapter setup ('' for full fine-tuning), from results.json."""
    train_examples: int | None = field(default=None, compare=False)
    """Examples the intermediate phase actually trained on (the cap, or all there are)."""

    sizes_in_name: bool = field(default=False, compare=False)
    """The option's name alone tells its sizes apart (a grid names each size)."""

    @property
    def label(self) -> str:
        if self.examples is None or self.sizes_in_name:
            return self.name
        return f"{self.name}@{self.examples}"

    @property
    def is_baseline(self) -> bool:
        return not self.tasks or self.name == BASELINE


@dataclass
class GridScores:
    """Per-language scores: ``lang[(label, target, seed)][language] = score``."""

    name: str
    options: list[Option]
    targets: list[str]
    lang: dict[tuple[str, str, Any], dict[str, float]] = field(default_factory=dict)
    metric: str = SCORE_METRIC
    """The per-language metric compared: the XTREME task score, or any metric key."""
    trained: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    """Parameters trained per (option label, phase), over its runs."""
    validation: dict[tuple[str, str, Any], float] = field(default_factory=dict)
    """The English validation score of each run's target training, by (label, target, seed)."""

    def validation_mean(self, label: str, target: str) -> float | None:
        values = [v for (o, t, _), v in self.validation.items() if o == label and t == target]
        return statistics.fmean(values) if values else None

    def series(self) -> dict[tuple, list[Option]]:
        """Options that differ only in intermediate dataset size, by their common
        (tasks, adversarial, adapters), each sorted by examples trained on; only
        series where some option caps the size."""
        groups: dict[tuple, list[Option]] = defaultdict(list)
        for option in self.options:
            if not option.is_baseline:
                groups[(option.tasks, option.adversarial, option.adapters)].append(option)
        return {
            key: sorted(members, key=_size)
            for key, members in groups.items()
            if any(o.examples is not None for o in members)
        }

    @property
    def baseline(self) -> Option | None:
        return next((o for o in self.options if o.is_baseline), None)

    def seeds(self, label: str, target: str) -> list[Any]:
        return sorted(s for (o, t, s) in self.lang if o == label and t == target)

    def task_score(self, label: str, target: str, seed: Any) -> float:
        """Mean of the per-language scores of one run."""
        return statistics.fmean(self.lang[(label, target, seed)].values())

    def task_scores(self, label: str, target: str) -> list[float]:
        return [self.task_score(label, target, s) for s in self.seeds(label, target)]

    def languages(self, target: str) -> list[str]:
        langs = {lg for (_, t, _), per in self.lang.items() if t == target for lg in per}
        return sorted(langs, key=lambda lg: (lg != "en", lg))

    def pairs(self, label: str, target: str) -> dict[tuple[Any, str], float]:
        """Scores keyed by (seed, language), for paired comparisons."""
        return {
            (seed, lg): v
            for (o, t, seed), per in self.lang.items()
            if o == label and t == target
            for lg, v in per.items()
        }

    def standard_counterpart(self, option: Option) -> Option | None:
        """The option that differs from an adversarial one only by training normally:
        the same intermediate tasks and dataset size, no adversarial training."""
        return next(
            (
                o
                for o in self.options
                if not o.adversarial and o.tasks == option.tasks and o.examples == option.examples
            ),
            None,
        )

    @property
    def varies_size(self) -> bool:
        """Whether some series of options differs only in the intermediate training size
        (a learning curve needs two points; a cap every option shares draws none)."""
        return any(len({_size(o) for o in members}) > 1 for members in self.series().values())


def _size(option: Option) -> float:
    """Examples trained on (uncapped, unknown: after every capped size)."""
    if option.train_examples is not None:
        return option.train_examples
    return option.examples if option.examples is not None else math.inf


def _sort_key(option: Option) -> tuple:
    """Baseline first, then by family and tasks, sizes in numeric order."""
    return (not option.is_baseline, option.family, option.tasks, _size(option), option.name)


def grid_scores(rows: list[dict[str, Any]], name: str, metric: str = SCORE_METRIC) -> GridScores:
    """Collect the rows of one metric (the derived XTREME ``score`` unless another key,
    such as ``f1``, is asked for) of the results table."""
    options: dict[str, Option] = {}
    lang: dict[tuple[str, str, Any], dict[str, float]] = defaultdict(dict)
    trained: dict[tuple[str, str], set[int]] = defaultdict(set)
    validation: dict[tuple[str, str, Any], float] = {}
    targets: list[str] = []
    known = sorted({row["metric"] for row in rows})
    if rows and metric not in known:
        raise XstiltsError(
            f"--metric {metric}: no run of {name} records it; its metrics: {', '.join(known)}"
        )
    sizes_per_name: dict[str, set[Any]] = defaultdict(set)
    for row in rows:
        sizes_per_name[row["intermediate_option"]].add(row["intermediate_examples"])
    for row in rows:
        if row["metric"] != metric:
            continue
        tasks = tuple(t for t in (row["intermediate_tasks"] or "").split("+") if t)
        option = Option(
            sizes_in_name=len(sizes_per_name[row["intermediate_option"]]) == 1,
            name=row["intermediate_option"],
            tasks=tasks,
            examples=row["intermediate_examples"],
            family=option_family(tasks),
            adversarial=row.get("adversarial") or "",
            adapters=row.get("adapters") or "",
            train_examples=row.get("intermediate_train_examples"),
        )
        options.setdefault(option.label, option)
        if row.get("validation_score") is not None:
            validation[(option.label, row["target"], row["seed"])] = row["validation_score"]
        for phase in ("intermediate", "target"):
            if row.get(f"{phase}_trained") is not None:
                trained[(option.label, phase)].add(row[f"{phase}_trained"])
        if row["target"] not in targets:
            targets.append(row["target"])
        lang[(option.label, row["target"], row["seed"])][row["language"]] = row["value"]
    return GridScores(
        name=name,
        options=sorted(options.values(), key=_sort_key),
        targets=sorted(targets),
        lang=dict(lang),
        metric=metric,
        trained=dict(trained),
        validation=validation,
    )


def load_grid(grid_dir: Path | str, metric: str = SCORE_METRIC) -> GridScores:
    grid_dir = Path(grid_dir)
    return grid_scores(load_table(grid_dir), grid_dir.resolve().name, metric)
