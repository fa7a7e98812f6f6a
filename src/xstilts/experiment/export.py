"""Gather the best run per task into one folder in the XTREME submission layout."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.io import atomic_write_json, read_json
from xstilts.tasks.spec import TASK_NAME

log = logging.getLogger(__name__)

BENCHMARKS = ("xtreme", "xtreme-r")


@dataclass
class Selection:
    task: str
    run_dir: Path
    criterion: str
    value: float | None
    files: list[str]


def find_results(root: Path) -> list[dict[str, Any]]:
    """results.json of every finished run under ``root`` (a run, or a folder of runs)."""
    paths = [root / "results.json"] if (root / "results.json").is_file() else []
    paths += sorted(p for p in root.rglob("results.json") if p.parent != root)
    results = []
    for path in paths:
        result = read_json(path)
        task = result.get("target_task")
        if not isinstance(task, str) or not TASK_NAME.fullmatch(task):
            raise XstiltsError(f"{path}: target_task {task!r} is not a task name")
        result["_dir"] = path.parent
        results.append(result)
    return results


def selection_score(result: dict[str, Any]) -> tuple[str, float | None]:
    """How a run competes for its task: never on test scores.

    Trained targets: the best English validation score of target training. BUCC: the
    mean dev F1 of its calibration. Otherwise (Tatoeba has no dev data) there is no
    score, and the most recent run is taken. Both are ``validation_score`` in results
    written by this version; older results are read as they are.
    """
    if result.get("validation_score") is not None:
        criterion = result.get("validation_from") or "validation score"
        return str(criterion), float(result["validation_score"])
    training = result.get("training")
    if training and training.get("best_score") is not None:
        return "english validation", float(training["best_score"])
    dev = [
        scores["calibration"]["dev_f1"]
        for scores in result["languages"].values()
        if "calibration" in scores and "dev_f1" in scores["calibration"]
    ]
    if dev:
        return "mean dev F1", sum(dev) / len(dev)
    return "most recent (no validation data)", None


def select_runs(results: list[dict[str, Any]], benchmark: str) -> list[Selection]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        whole_split = (result.get("evaluation") or {}).get("max_examples") is None
        if (
            benchmark in result.get("benchmarks", [])
            and result.get("split") == "test"
            and whole_split
        ):
            by_task.setdefault(result["target_task"], []).append(result)
    _one_benchmark([r for runs in by_task.values() for r in runs], benchmark)
    chosen = []
    for task, candidates in sorted(by_task.items()):

        def key(result: dict[str, Any]) -> tuple[float, str]:
            _, value = selection_score(result)
            return (value if value is not None else float("-inf"), result["finished_at"])

        best = max(candidates, key=key)
        criterion, value = selection_score(best)
        files = [Path(s["predictions"]).name for s in _benchmark_scores(best, benchmark)]
        chosen.append(Selection(task, best["_dir"], criterion, value, sorted(files)))
    return chosen


def _one_benchmark(results: list[dict[str, Any]], benchmark: str) -> None:
    """Refuse a submission of runs evaluated under different evaluation.benchmark
    settings, or under another benchmark than the one exported."""
    found = sorted({str(r.get("benchmark")) for r in results})
    if len(found) > 1 or (found and found[0] not in ("None", benchmark)):
        runs = ", ".join(found).replace("None", "none (every language)")
        raise XstiltsError(
            f"--benchmark {benchmark}: the runs found were evaluated under evaluation."
            f"benchmark {runs}; export runs of one grid evaluated under {benchmark} (or "
            "with it unset)"
        )


def _benchmark_scores(result: dict[str, Any], benchmark: str) -> list[dict[str, Any]]:
    """The run's per-language entries of ``benchmark``'s languages (all of them in
    results written before benchmark_averages)."""
    languages = result["languages"]
    averages = (result.get("benchmark_averages") or {}).get(benchmark)
    if averages is None:
        return list(languages.values())
    return [languages[lang] for lang in averages["languages"] if lang in languages]


def export_submission(source: Path, benchmark: str, out: Path) -> list[Selection]:
    """Copy the chosen runs' prediction files to ``out/<task>/test-<lang>.<ext>``."""
    if benchmark not in BENCHMARKS:
        raise XstiltsError(f"--benchmark: '{benchmark}' is not one of {', '.join(BENCHMARKS)}")
    if not source.is_dir():
        raise XstiltsError(f"no run or grid folder at {source}")
    selections = select_runs(find_results(source), benchmark)
    if not selections:
        raise XstiltsError(f"{source}: no finished run of a {benchmark} task evaluated on test")
    for selection in selections:
        task_dir = out / selection.task
        task_dir.mkdir(parents=True, exist_ok=True)
        for name in selection.files:
            shutil.copyfile(
                selection.run_dir / "predictions" / selection.task / name, task_dir / name
            )
        log.info(
            "%s: %d files from %s (%s)",
            selection.task,
            len(selection.files),
            selection.run_dir.name,
            selection.criterion,
        )
    atomic_write_json(
        out / "selection.json",
        {
            s.task: {
                "run": str(s.run_dir),
                "criterion": s.criterion,
                "value": s.value,
                "files": s.files,
            }
            for s in selections
        },
    )
    return selections
