"""Metrics over one label per example."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(predictions: Sequence[object], references: Sequence[object]) -> dict[str, float]:
    """Percent of predictions equal to their reference, as the XTREME scorer reports it."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise ValueError("no examples to score")
    correct = sum(p == r for p, r in zip(predictions, references, strict=True))
    # Divided first, then scaled, as the official scorer does: the last bit agrees.
    return {"accuracy": correct / len(references) * 100}
