"""Per-language task scores of a grid, keyed by intermediate option, target and seed."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.experiment.results_db import SCORE_METRIC, load_table

BASELINE = "baseline"
MULTI = "multi"
TARGET_ONLY = "target-only"
"""Family of an option without intermediate tasks that is not the baseline (a target
adapter, target-only adversarial training): compared with the baseline, never pooled."""


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
    baseline: bool = field(default=False, compare=False)
    """Identified as the grid's baseline (see :func:`identify_baseline`)."""

    @property
    def label(self) -> str:
        if self.examples is None or self.sizes_in_name:
            return self.name
        return f"{self.name}@{self.examples}"

    @property
    def is_baseline(self) -> bool:
        return self.baseline

    @property
    def plain(self) -> bool:
        """No intermediate phase and no variant: a candidate for the baseline."""
        return not self.tasks and not self.adversarial and not self.adapters


@dataclass(frozen=True)
class RunInfo:
    """What a run's results.json says beyond its scores."""

    run_id: str
    intermediate_run: str | None = None
    """The intermediate checkpoint the run started from (shared seed-level encoder)."""
    language_adapters: dict[str, str] = field(default_factory=dict)
    """Per evaluated language, whose language adapter ran (MAD-X; 'none': no adapter)."""

    @property
    def fallbacks(self) -> dict[str, str]:
        """Languages evaluated with another language's adapter, or with none."""
        return {lang: used for lang, used in self.language_adapters.items() if used != lang}


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
    runs: dict[tuple[str, str, Any], RunInfo] = field(default_factory=dict)
    """Each run's identity and starting checkpoint, by (label, target, seed)."""
    benchmark: str | None = None
    """The runs' evaluation.benchmark (None: every language of each task)."""

    def languages_words(self) -> str:
        """Which languages the averages cover, for the main table's caption."""
        counts = ", ".join(f"{t} {len(self.languages(t))}" for t in self.targets)
        if self.benchmark:
            return (
                f"Languages: those {self.benchmark} evaluates per target; a target of no "
                f"benchmark (a CPU-scale stand-in) keeps its own ({counts})."
            )
        return (
            f"Languages: every language each run evaluated ({counts}); no "
            "evaluation.benchmark was set, so averages may mix XTREME's and XTREME-R's."
        )

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

    def option(self, label: str) -> Option | None:
        return next((o for o in self.options if o.label == label), None)

    def seeds(self, label: str, target: str) -> list[Any]:
        return sorted(s for (o, t, s) in self.lang if o == label and t == target)

    def task_scores(self, label: str, target: str) -> list[float]:
        """Each run's score over the target's common languages."""
        return list(self.run_scores(label, target).values())

    def languages(self, target: str) -> list[str]:
        """The languages every run of ``target`` evaluated: what its scores average."""
        per_run = [set(per) for (_, t, _), per in self.lang.items() if t == target]
        common = set.intersection(*per_run) if per_run else set()
        return sorted(common, key=lambda lg: (lg != "en", lg))

    def uneven_languages(self, target: str) -> list[str]:
        """Languages some runs of ``target`` evaluated and others did not (left out of
        every average so that options are compared on the same languages)."""
        every = {lg for (_, t, _), per in self.lang.items() if t == target for lg in per}
        return sorted(every - set(self.languages(target)))

    def run_scores(
        self, label: str, target: str, languages: list[str] | None = None
    ) -> dict[Any, float]:
        """One number per run (by seed): the mean of its scores over ``languages``
        (default: the target's common languages)."""
        langs = self.languages(target) if languages is None else languages
        out = {}
        for seed in self.seeds(label, target):
            per = self.lang[(label, target, seed)]
            values = [per[lg] for lg in langs if lg in per]
            if values and len(values) == len(langs):
                out[seed] = statistics.fmean(values)
        return out

    def shared_starts(self, a: str, b: str, target: str) -> list[tuple[Any, Any]] | None:
        """Seed pairs (a's, b's) whose runs start from the same intermediate checkpoint,
        when every run of both options pairs up that way; else None (unpaired)."""
        starts_a = {s: self.runs.get((a, target, s)) for s in self.seeds(a, target)}
        starts_b = {s: self.runs.get((b, target, s)) for s in self.seeds(b, target)}
        by_start = {
            info.intermediate_run: s
            for s, info in starts_b.items()
            if info is not None and info.intermediate_run
        }
        if len(by_start) != len(starts_b) or len(starts_a) != len(starts_b):
            return None
        pairs = []
        for s, info in starts_a.items():
            if info is None or info.intermediate_run not in by_start:
                return None
            pairs.append((s, by_start[info.intermediate_run]))
        return pairs

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


def grid_scores(
    rows: list[dict[str, Any]],
    name: str,
    metric: str = SCORE_METRIC,
    *,
    baseline: str | None = None,
) -> GridScores:
    """Collect the rows of one metric (the derived XTREME ``score`` unless another key,
    such as ``f1``, is asked for) of the results table. ``baseline``: the baseline's
    option label (default: see :func:`identify_baseline`)."""
    options: dict[str, Option] = {}
    lang: dict[tuple[str, str, Any], dict[str, float]] = defaultdict(dict)
    trained: dict[tuple[str, str], set[int]] = defaultdict(set)
    validation: dict[tuple[str, str, Any], float] = {}
    runs: dict[tuple[str, str, Any], RunInfo] = {}
    targets: list[str] = []
    benchmark = _one_benchmark(rows, name)
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
        key = (option.label, row["target"], row["seed"])
        if row.get("validation_score") is not None:
            validation[key] = row["validation_score"]
        for phase in ("intermediate", "target"):
            if row.get(f"{phase}_trained") is not None:
                trained[(option.label, phase)].add(row[f"{phase}_trained"])
        if row["target"] not in targets:
            targets.append(row["target"])
        lang[key][row["language"]] = row["value"]
        if key not in runs:
            runs[key] = _run_info(row)
    labelled = identify_baseline(list(options.values()), baseline, name)
    return GridScores(
        name=name,
        options=sorted(labelled, key=_sort_key),
        targets=sorted(targets),
        lang=dict(lang),
        metric=metric,
        trained=dict(trained),
        validation=validation,
        runs=runs,
        benchmark=benchmark,
    )


def _one_benchmark(rows: list[dict[str, Any]], grid: str) -> str | None:
    """Refuse runs evaluated under different evaluation.benchmark settings: their task
    averages are over different languages (XQuAD with or without Romanian, ...)."""
    found = sorted({str(row.get("benchmark")) for row in rows})
    if len(found) > 1:
        shown = ", ".join(found).replace("None", "none (every language)")
        raise XstiltsError(
            f"{grid}: its runs were evaluated under different evaluation.benchmark "
            f"settings ({shown}), whose averages cover different languages; report each "
            "benchmark's runs from a grid folder of their own"
        )
    return rows[0].get("benchmark") if rows else None


def identify_baseline(options: list[Option], label: str | None, grid: str) -> list[Option]:
    """The options with the baseline marked: the one named by ``label`` (the grid's
    report.baseline), else the only option with no intermediate phase and no variant,
    else, among several such, the one labelled 'baseline'. Other options without
    intermediate tasks are target-only variants, compared against the baseline."""
    plain = [o for o in options if o.plain]
    if label is not None:
        if all(o.label != label for o in options):
            known = ", ".join(o.label for o in options)
            raise XstiltsError(
                f"{grid}: report.baseline '{label}' is no option of the grid ({known})"
            )
        chosen = label
    elif len(plain) == 1:
        chosen = plain[0].label
    else:
        chosen = next((o.label for o in plain if o.name == BASELINE), None)
    out = []
    for option in options:
        family = option.family
        if option.label == chosen:
            family = BASELINE
        elif not option.tasks:
            family = TARGET_ONLY
        out.append(replace(option, baseline=option.label == chosen, family=family))
    return out


def _run_info(row: dict[str, Any]) -> RunInfo:
    """The run's starting checkpoint and language adapters, from its results.json when
    the file is there (an index row alone knows only the run's id)."""
    path = row.get("results_path")
    if not path or not Path(path).is_file():
        return RunInfo(run_id=row["run_id"])
    try:
        results = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return RunInfo(run_id=row["run_id"])
    adapters = {
        lang: str(values["language_adapter"] or "none")
        for lang, values in (results.get("languages") or {}).items()
        if isinstance(values, dict) and "language_adapter" in values
    }
    return RunInfo(
        run_id=row["run_id"],
        intermediate_run=results.get("intermediate_run"),
        language_adapters=adapters,
    )


def load_grid(
    grid_dir: Path | str, metric: str = SCORE_METRIC, *, baseline: str | None = None
) -> GridScores:
    grid_dir = Path(grid_dir)
    return grid_scores(load_table(grid_dir), grid_dir.resolve().name, metric, baseline=baseline)
