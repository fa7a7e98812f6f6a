"""Parts of a run's results.json beyond its per-language scores: the benchmark averages
and the validation score (what model selection may look at: never a test score)."""

from __future__ import annotations

import statistics
from typing import Any

from xstilts.experiment.results_db import language_score
from xstilts.tasks.spec import TaskSpec

QA_SCORE = "(exact_match + f1) / 2"


def benchmark_averages(
    spec: TaskSpec, scores: dict[str, dict[str, Any]], main_key: str, benchmark: str | None
) -> dict[str, dict[str, Any]]:
    """Per benchmark the target belongs to (only ``benchmark`` when one is configured):
    which of the evaluated languages it averages, which of its languages were not
    evaluated, and the mean of the per-language XTREME score (results_db.language_score)
    over them; None unless every language of the benchmark was evaluated and scored
    (test files without gold labels give predictions only)."""
    wanted = [benchmark] if benchmark is not None else list(spec.benchmarks)
    averages = {}
    for name in wanted:
        if name not in spec.benchmarks:
            continue  # a target of no benchmark (a stand-in) evaluates its own languages
        languages = spec.benchmark_languages.get(name, spec.languages)
        evaluated = [lang for lang in languages if lang in scores]
        values = [language_score(scores[lang], main_key) for lang in evaluated]
        complete = len(evaluated) == len(languages) and None not in values
        averages[name] = {
            "languages": evaluated,
            "missing": [lang for lang in languages if lang not in scores],
            "metric": QA_SCORE if _is_qa(scores, main_key) else main_key,
            "score": statistics.fmean(v for v in values if v is not None) if complete else None,
        }
    return averages


def _is_qa(scores: dict[str, dict[str, Any]], main_key: str) -> bool:
    return main_key == "f1" and any("exact_match" in values for values in scores.values())


def validation_score(
    training: dict[str, Any] | None, scores: dict[str, dict[str, Any]]
) -> tuple[float | None, str | None]:
    """The run's validation score and where it comes from: target training's best
    English validation score; for a zero-shot target that calibrates on dev (BUCC), the
    mean dev F1 at the threshold chosen on dev, over the languages evaluated; else none
    (Tatoeba has no dev split)."""
    if training is not None and training.get("best_score") is not None:
        return float(training["best_score"]), "target training: best English validation score"
    dev = [
        float(values["calibration"]["dev_f1"])
        for values in scores.values()
        if isinstance(values.get("calibration"), dict) and "dev_f1" in values["calibration"]
    ]
    if dev:
        where = f"mean dev F1 at the threshold chosen on dev ({len(dev)} languages)"
        return statistics.fmean(dev), where
    return None, None
