"""Budget mode: a grid with ``selection: {method: ..., top_k: K}`` trains each target
only from the K options its estimator ranks highest, and from the baseline.

The estimates come first: data-only methods (semb, textemb, size) need no model, so
the intermediate phases no kept target run needs are never trained; feature-based
ones (logme, fewshot) need every option's intermediate phase, trained through the
pipeline before the ranking. A dry run narrows the plan with the estimates already on
disk, and otherwise tells what K options per target would save at most and at least.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from rich.console import Console

from xstilts.experiment.grid import GridConfig, Plan, PlannedRun
from xstilts.io import atomic_write_json, read_json
from xstilts.selection.estimators import settings_key
from xstilts.selection.select import SELECTION_DIR, estimates_path, rank_grid
from xstilts.selection.settings import SelectionSettings

log = logging.getLogger(__name__)

CHOICE_FILE = "budget.json"


def baseline_options(grid: GridConfig) -> set[str]:
    return {option for option, section in grid.grid.intermediate.items() if section is None}


def narrowed(plan: Plan, keep: dict[str, set[str]]) -> Plan:
    """The plan with only the target runs of the kept options (per target) and the
    runs they depend on."""
    targets = [r for r in plan.targets if r.option in keep.get(r.target or "", set())]
    needed = {name for run in targets for name in run.depends_on}
    inner = [r for r in plan.intermediate if r.name in needed]
    needed |= {name for run in inner for name in run.depends_on}
    adapters = [r for r in plan.language_adapters if r.name in needed]
    return Plan([*adapters, *inner, *targets])


def _hours(runs: list[PlannedRun]) -> float:
    return sum(r.gpu_hours or 0.0 for r in runs)


def budget_plan(
    grid: GridConfig,
    plan: Plan,
    out_root: Path,
    console: Console,
    *,
    source: str = "grid",
    dry_run: bool = False,
) -> Plan:
    """The plan of a grid in budget mode (the whole plan without ``top_k``)."""
    settings = grid.selection
    if settings is None or settings.top_k is None:
        return plan
    baselines = baseline_options(grid)
    choice = _cached_choice(grid, out_root, settings) if dry_run else None
    if choice is None and dry_run:
        _print_bounds(grid, plan, settings, baselines, console)
        return plan
    if choice is None:
        _, rankings = rank_grid(grid, out_root, [settings.method], settings, source)
        choice = {
            r.target: [o for o in (x.option for x in r.ranked) if o not in baselines][
                : settings.top_k
            ]
            for r in rankings[settings.method]
        }
        atomic_write_json(
            out_root / SELECTION_DIR / CHOICE_FILE,
            {"method": settings.method, "top_k": settings.top_k, "chosen": choice},
        )
    keep = {target: set(options) | baselines for target, options in choice.items()}
    kept = narrowed(plan, keep)
    dropped = [r for r in plan.runs if r.name not in {k.name for k in kept.runs}]
    for target, options in choice.items():
        chosen = ", ".join(options)
        line = f"selection ({settings.method}, top {settings.top_k}) {target}: {chosen}"
        console.print(f"{line} (+ baseline)", highlight=False)
    console.print(
        f"selection: {len(dropped)} of {len(plan.runs)} runs not trained, saving "
        f"{_hours(dropped):,.1f} estimated GPU-hours",
        highlight=False,
    )
    return kept


def _cached_choice(
    grid: GridConfig, out_root: Path, settings: SelectionSettings
) -> dict[str, list[str]] | None:
    """The top-K options per target from the estimates on disk, if every one is there."""
    path = estimates_path(out_root)
    chosen_file = out_root / SELECTION_DIR / CHOICE_FILE
    if not path.is_file() or not chosen_file.is_file():
        return None
    saved = read_json(chosen_file)
    if saved.get("method") != settings.method or saved.get("top_k") != settings.top_k:
        return None
    wanted = settings_key(settings.method, settings)
    estimates = read_json(path).values()
    if not any(e.get("settings") == wanted for e in estimates):
        return None
    return {t: list(options) for t, options in saved["chosen"].items()}


def _print_bounds(
    grid: GridConfig,
    plan: Plan,
    settings: SelectionSettings,
    baselines: set[str],
    console: Console,
) -> None:
    """Before any estimate: the GPU-hours of the target runs K options per target
    leave out, at least (counting the K costliest options as kept)."""
    assert settings.top_k is not None
    per_target: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for run in plan.targets:
        if run.option not in baselines and run.target is not None:
            per_target[run.target][run.option] += run.gpu_hours or 0.0
    saved = sum(
        sum(sorted(costs.values(), reverse=True)[settings.top_k :]) for costs in per_target.values()
    )
    options = len(set(grid.grid.intermediate) - baselines)
    extra = (
        "; a data-only method also saves the intermediate runs no kept option needs"
        if settings.method in ("semb", "textemb", "size")
        else ""
    )
    console.print(
        f"selection ({settings.method}, top {settings.top_k} of {options} options per target, "
        f"+ baseline): saves at least {saved:,.1f} of {_hours(plan.runs):,.1f} estimated "
        f"GPU-hours (target runs){extra}; the options are chosen when the grid runs",
        highlight=False,
    )
