"""Batched forward passes over features, shared by validation and zero-shot evaluation.

Features run longest first, so each batch pads to about its own rows' length instead
of the longest row of a random stretch of the split; the outputs are put back in
feature order, so formats see exactly what an unsorted run gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from xstilts.features import feature_lengths
from xstilts.formats import TaskFormat
from xstilts.formats.base import FeatureOutputs
from xstilts.modeling import MultiTaskModel
from xstilts.progress import progress_bar


@dataclass(frozen=True)
class Sharding:
    """This process's place among ``world_size`` processes that share inference.

    ``gather`` takes this process's list of outputs and returns the lists of all
    processes concatenated in rank order, on every process (as
    ``accelerate.utils.gather_object`` does).
    """

    rank: int
    world_size: int
    gather: Callable[[FeatureOutputs], FeatureOutputs]

    def bounds(self, count: int) -> tuple[int, int]:
        """This process's contiguous share of ``count`` features."""
        share, extra = divmod(count, self.world_size)
        start = self.rank * share + min(self.rank, extra)
        return start, start + share + (1 if self.rank < extra else 0)


def accelerator_sharding(accelerator: Any) -> Sharding | None:
    """The sharding of an ``accelerate.Accelerator``'s processes; None for one process."""
    if accelerator.num_processes <= 1:
        return None
    from accelerate.utils import gather_object

    return Sharding(accelerator.process_index, accelerator.num_processes, gather_object)


def run_sharded(
    model: MultiTaskModel,
    head: str,
    fmt: TaskFormat,
    features: datasets.Dataset,
    sharding: Sharding | None,
    **options: Any,
) -> FeatureOutputs:
    """``run_inference`` over this process's share of ``features``; the outputs of all
    shares, in feature order, on every process."""
    if sharding is None:
        return run_inference(model, head, fmt, features, **options)
    start, stop = sharding.bounds(len(features))
    own = run_inference(model, head, fmt, features.select(range(start, stop)), **options)
    return sharding.gather(own)


@torch.no_grad()
def run_inference(
    model: MultiTaskModel,
    head: str,
    fmt: TaskFormat,
    features: datasets.Dataset,
    *,
    batch_size: int,
    pad_token_id: int,
    device: torch.device,
    desc: str = "predicting",
    sort_by_length: bool = True,
) -> FeatureOutputs:
    """Model outputs for every feature, in feature order, as float32 numpy arrays."""
    was_training = model.training
    model.eval()
    order = inference_order(features) if sort_by_length else np.arange(len(features))
    results: list[dict[str, np.ndarray] | None] = [None] * len(features)
    try:
        for start in progress_bar(range(0, len(features), batch_size), desc=desc, leave=False):
            rows = order[start : start + batch_size]
            columns = features[rows.tolist()]
            batch = {k: v.to(device) for k, v in fmt.collate(columns, pad_token_id).items()}
            outputs = model(head, batch)
            arrays = {key: value.float().cpu().numpy() for key, value in outputs.items()}
            for i, row in enumerate(rows):
                results[row] = {key: value[i] for key, value in arrays.items()}
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]  # every row is filled


def inference_order(features: datasets.Dataset) -> np.ndarray:
    """Feature indices, longest first (ties in feature order)."""
    if len(features) == 0:
        return np.arange(0)
    return np.argsort(-feature_lengths(features), kind="stable")
