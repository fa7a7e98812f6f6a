"""Metric names used by task specs, mapped to scoring functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xstilts.errors import XstiltsError
from xstilts.metrics.classification import accuracy
from xstilts.metrics.mlqa import mlqa_scores
from xstilts.metrics.retrieval import bucc_f1, mean_average_precision_at_k, tatoeba_accuracy
from xstilts.metrics.squad import squad_scores, squad_v2_scores
from xstilts.metrics.tagging import seqeval_scores, token_accuracy

ScoreFn = Callable[..., dict[str, float]]
"""``score(predictions, references)``, plus ``language=`` when the metric needs it."""


@dataclass(frozen=True)
class Metric:
    name: str
    score: ScoreFn
    main_key: str
    """The key of the score dict used for model selection and averages."""
    needs_language: bool = False
    """When set, ``score`` must also be given the ``language`` keyword."""


def mlm_accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Percent of masked tokens predicted correctly, over all examples together.

    ``predictions`` are the counts of correctly predicted masked tokens of each
    example and ``references`` the counts of its masked tokens (the ``mlm`` format
    derives both from the model's outputs).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    masked = sum(int(count) for count in references)
    if masked == 0:
        raise ValueError("no masked tokens to score")
    correct = sum(int(count) for count in predictions)
    if not 0 <= correct <= masked:
        raise ValueError(f"{correct} correct of {masked} masked tokens")
    return {"mlm_accuracy": 100.0 * correct / masked}


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, "accuracy"),
    "squad": Metric("squad", squad_scores, "f1"),
    "squad_v2": Metric("squad_v2", squad_v2_scores, "f1"),
    "mlqa": Metric("mlqa", mlqa_scores, "f1", needs_language=True),
    "seqeval": Metric("seqeval", seqeval_scores, "f1"),
    # CCG supertags are not chunks: jiant scores CCG by token accuracy.
    "token_accuracy": Metric("token_accuracy", token_accuracy, "token_accuracy"),
    "bucc_f1": Metric("bucc_f1", bucc_f1, "f1"),
    "tatoeba_accuracy": Metric("tatoeba_accuracy", tatoeba_accuracy, "accuracy"),
    "map@20": Metric("map@20", mean_average_precision_at_k, "map@20"),
    "mlm_accuracy": Metric("mlm_accuracy", mlm_accuracy, "mlm_accuracy"),
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise XstiltsError(
            f"unknown metric '{name}'; known metrics: {', '.join(sorted(METRICS))}"
        ) from None
