"""Retrieval metrics: BUCC mining F1, Tatoeba accuracy, mAP@k (LAReQA, Mewsli-X).

- ``bucc_f1`` reproduces ``bucc_f1`` in XTREME's ``evaluate.py`` (google-research/xtreme).
- ``tatoeba_accuracy`` reproduces ``accuracy`` there, which XTREME applies to tatoeba.
- ``mean_average_precision_at_k`` reproduces ``average_precision_at_k`` averaged over
  queries as in ``mean_avg_prec_at_k`` of XTREME-R's ``third_party/utils_lareqa.py``:
  precision at each rank (up to k) holding a not-yet-seen relevant item, summed and
  divided by ``min(k, number of relevant items)``. With exactly one relevant item this
  is the reciprocal rank within the top k, i.e. the MRR@20 of ``evaluate`` in
  ``third_party/utils_mewslix.py`` (which XTREME-R labels "MRR/MAP@20").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from xstilts.metrics.classification import accuracy


def bucc_f1(
    predicted_pairs: Iterable[tuple[str, str]], gold_pairs: Iterable[tuple[str, str]]
) -> dict[str, float]:
    """F1, precision and recall (percent) of the predicted (source id, target id) pairs.

    Both sides are compared as sets. With no correct pair (including no prediction at
    all) every score is 0, as in the official code, which never divides by zero.
    """
    predicted = {tuple(pair) for pair in predicted_pairs}
    gold = {tuple(pair) for pair in gold_pairs}
    correct = len(predicted & gold)
    if correct > 0:
        precision = correct / len(predicted)
        recall = correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0.0
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


def tatoeba_accuracy(
    predicted_indices: Sequence[int], gold_indices: Sequence[int]
) -> dict[str, float]:
    """Percent of sentences whose retrieved English neighbour is the gold one."""
    return accuracy(predicted_indices, gold_indices)


def average_precision_at_k(
    ranked: Sequence[str], relevant: Collection[str], k: int | None = 20
) -> float:
    """AP of one ranking, cut at ``k`` and normalised by ``min(k, len(relevant))``.

    A repeated item is a miss at its later ranks. ``k=None`` means no cut-off.
    """
    if len(relevant) == 0:
        raise ValueError("a query has no relevant item")
    if k is not None and k < 1:
        raise ValueError(f"k must be positive or None, got {k}")
    considered = list(ranked[:k]) if k is not None else list(ranked)
    total = 0.0
    hits = 0.0
    seen: set[str] = set()
    for position, item in enumerate(considered):
        if item in relevant and item not in seen:
            hits += 1.0
            total += hits / (position + 1.0)
        seen.add(item)
    divisor = min(len(relevant), k) if k is not None else len(relevant)
    return total / divisor


def mean_average_precision_at_k(
    ranked: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], k: int = 20
) -> dict[str, float]:
    """Mean over queries of AP@k, in percent, under the key ``map@{k}``.

    ``ranked[i]`` lists query i's candidates best first; ``relevant[i]`` holds its gold ones.
    """
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} relevance sets")
    if not ranked:
        raise ValueError("no queries to score")
    scores = [average_precision_at_k(r, g, k) for r, g in zip(ranked, relevant, strict=True)]
    return {f"map@{k}": sum(scores) / len(scores) * 100}  # divided first, as officially
