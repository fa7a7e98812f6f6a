"""``xstilts select --evaluate``: each estimator's rankings against what the grid's
finished target runs measured, beside the size and random baselines, with the
estimator's cost as a share of the target runs it ranks.

Measured scores are test scores (results.json: the zero-shot average, and English
when it was scored on the test split); they only judge estimators, never choose. An
option's score is its mean over the grid's seeds; options without a finished run are
left out of that target's comparison. Costs are measured seconds: an estimator's
(recorded with its estimates) over the target runs' (from their logs, every seed).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.experiment.evaluation_records import RESULTS_FILE
from xstilts.io import read_json
from xstilts.selection.agreement import random_scores, scores
from xstilts.selection.candidates import TargetCandidates
from xstilts.selection.select import TargetRanking
from xstilts.selection.settings import EVALUATION_FILE
from xstilts.selection.timing import run_seconds

MEASURES = ("zero-shot", "english")
METRICS = ("spearman", "ndcg@3", "regret@1", "regret@3")
RANDOM = "random"


@dataclass
class Measured:
    option: str
    scores: dict[str, float | None]
    """zero-shot and english: means over the finished runs."""
    seconds: float | None
    """The option's target runs (all seeds), from their logs; None if any log lacks."""


@dataclass
class TargetCheck:
    target: str
    method: str
    options: list[str]
    estimates: list[float | None]
    measured: list[Measured]
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Per measure, the agreement scores (selection/agreement.py)."""
    cost_seconds: float | None = None
    runs_seconds: float | None = None
    load: float | None = None
    """Mean 1-minute load average while the estimates were made."""

    @property
    def cost_share(self) -> float | None:
        if self.cost_seconds is None or not self.runs_seconds:
            return None
        return self.cost_seconds / self.runs_seconds


def measured_scores(group: TargetCandidates) -> list[Measured]:
    """The finished options of a target with their measured scores."""
    found = []
    for candidate in group.candidates:
        zero_shot, english, seconds = [], [], []
        for run_dir in candidate.run_dirs:
            path = run_dir / RESULTS_FILE
            if not path.is_file():
                continue
            results = read_json(path)
            if results.get("average_zero_shot") is not None:
                zero_shot.append(float(results["average_zero_shot"]))
            measured_english = results.get("english") or {}
            if measured_english.get("split") == "test":  # never a validation score
                english.append(float(measured_english["score"]))
            seconds.append(run_seconds(run_dir))
        if not zero_shot and not english:
            continue
        found.append(
            Measured(
                candidate.option,
                {
                    "zero-shot": statistics.fmean(zero_shot) if zero_shot else None,
                    "english": statistics.fmean(english) if english else None,
                },
                None if None in seconds else sum(s for s in seconds if s is not None),
            )
        )
    return found


def check_target(ranking: TargetRanking, group: TargetCandidates) -> TargetCheck | None:
    """One method on one target; None when fewer than two options were measured."""
    measured = measured_scores(group)
    if len(measured) < 2 or ranking.skipped:
        return None
    by_option = {r.option: r.estimate for r in ranking.ranked}
    options = [m.option for m in measured]
    check = TargetCheck(
        group.target,
        ranking.method,
        options,
        [by_option[o].value for o in options],
        measured,
    )
    _score(check, lambda values: scores(check.estimates, values))
    check.cost_seconds = sum(by_option[o].seconds for o in options)
    loads = [by_option[o].load for o in options if by_option[o].load is not None]
    check.load = statistics.fmean(loads) if loads else None  # type: ignore[arg-type]
    run_times = [m.seconds for m in measured]
    check.runs_seconds = None if None in run_times else sum(run_times)  # type: ignore[arg-type]
    return check


def random_check(group: TargetCandidates) -> TargetCheck | None:
    measured = measured_scores(group)
    if len(measured) < 2:
        return None
    check = TargetCheck(group.target, RANDOM, [m.option for m in measured], [], measured)
    _score(check, random_scores)
    check.cost_seconds = 0.0
    return check


def _score(check: TargetCheck, score: Any) -> None:
    for measure in MEASURES:
        values = [m.scores[measure] for m in check.measured]
        if any(v is None for v in values):
            check.metrics[measure] = dict.fromkeys(METRICS)
        else:
            check.metrics[measure] = score(values)


def check_all(
    groups: list[TargetCandidates], rankings: dict[str, list[TargetRanking]]
) -> dict[str, list[TargetCheck]]:
    """Per method (and the random baseline), its check on each measured target."""
    by_target = {g.target: g for g in groups}
    checks: dict[str, list[TargetCheck]] = {}
    for method, ranked in rankings.items():
        found = [check_target(r, by_target[r.target]) for r in ranked]
        checks[method] = [c for c in found if c is not None]
    found = [random_check(g) for g in groups]
    checks[RANDOM] = [c for c in found if c is not None]
    return checks


def mean_metrics(checks: list[TargetCheck]) -> dict[str, dict[str, float | None]]:
    """Per measure, each metric averaged over the targets that have it."""
    means: dict[str, dict[str, float | None]] = {}
    for measure in MEASURES:
        means[measure] = {}
        for metric in METRICS:
            values = [c.metrics[measure][metric] for c in checks]
            kept = [v for v in values if v is not None]
            means[measure][metric] = statistics.fmean(kept) if kept else None
    return means


def total_share(checks: list[TargetCheck]) -> float | None:
    """The method's seconds over the target runs' seconds, over all targets."""
    costs = [c.cost_seconds for c in checks]
    runs = [c.runs_seconds for c in checks]
    if not checks or None in costs or None in runs or not sum(runs):  # type: ignore[arg-type]
        return None
    return sum(costs) / sum(runs)  # type: ignore[arg-type]


def to_json(checks: dict[str, list[TargetCheck]]) -> dict[str, Any]:
    """What OUT/selection/evaluation.json keeps (the report's predicted-against-measured
    figure and table read it)."""
    return {
        method: {
            "targets": [
                {
                    "target": c.target,
                    "options": c.options,
                    "estimates": c.estimates,
                    "measured": [m.scores for m in c.measured],
                    "metrics": c.metrics,
                    "cost_seconds": c.cost_seconds,
                    "runs_seconds": c.runs_seconds,
                    "load": c.load,
                }
                for c in found
            ],
            "mean": mean_metrics(found),
            "cost_share": total_share(found),
        }
        for method, found in checks.items()
    }


def evaluation_path(out_root: Path) -> Path:
    return out_root / EVALUATION_FILE
