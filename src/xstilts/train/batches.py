"""Deterministic, resumable streams of training batches.

The batches of epoch ``e`` are drawn from ``(seed, e)`` alone, so a stream's whole
state is two integers (epoch, batches taken) and a resumed run sees exactly the
batches an uninterrupted one would. With several processes each takes its own slice
of every global batch (a distributed sampler).

Given the examples' lengths, batches are length-grouped as the Hugging Face
Trainer's ``group_by_length`` does: shuffle, cut into mega-batches of up to 50
global batches, sort each mega-batch by length (longest first), cut it into batches,
and shuffle the batches. A batch then pads to about its own examples' length instead
of the longest of a random draw. The batch holding the longest example comes first,
so a batch size too large for the device fails at the first step, not hours in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MEGA_BATCH_FACTOR = 50
"""Global batches per mega-batch, at most (the Trainer's value)."""


@dataclass
class StreamPosition:
    epoch: int = 0
    batches: int = 0


class BatchStream:
    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int | list[int],
        *,
        rank: int = 0,
        world_size: int = 1,
        position: StreamPosition | None = None,
        lengths: np.ndarray | None = None,
    ) -> None:
        """``lengths``: each example's length, to group batches by length (None: random
        batches)."""
        if num_examples < 1:
            raise ValueError("a batch stream needs at least one example")
        if lengths is not None and len(lengths) != num_examples:
            raise ValueError(f"{len(lengths)} lengths for {num_examples} examples")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = position or StreamPosition()
        self.lengths = None if lengths is None else np.asarray(lengths)
        self._batches_epoch = -1
        self._batches: list[np.ndarray] = []
        self._first: np.ndarray = np.empty(0, dtype=np.int64)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.num_examples // self.global_batch)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if epoch != self._batches_epoch:
            seeds = [*self.seed, epoch] if isinstance(self.seed, list) else [self.seed, epoch]
            rng = np.random.default_rng(seeds)
            order = rng.permutation(self.num_examples)
            self._first = order[: self.world_size]
            if self.lengths is None:
                self._batches = _cut(order, self.global_batch)
            else:
                self._batches = self._grouped(order, rng)
            self._batches_epoch = epoch
        return self._batches

    def _grouped(self, order: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        assert self.lengths is not None
        batches: list[np.ndarray] = []
        for mega in _cut(order, MEGA_BATCH_FACTOR * self.global_batch):
            # Stable sort: ties keep their shuffled order, the same on every platform.
            longest_first = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(_cut(longest_first, self.global_batch))
        shuffled = [batches[i] for i in rng.permutation(len(batches))]
        longest = max(range(len(shuffled)), key=lambda i: self.lengths[shuffled[i][0]])
        shuffled[0], shuffled[longest] = shuffled[longest], shuffled[0]
        return shuffled

    def next_indices(self) -> list[int]:
        """Indices of this process's share of the next global batch."""
        if self.position.batches >= self.batches_per_epoch:
            self.position = StreamPosition(self.position.epoch + 1, 0)
        chunk = self._epoch_batches(self.position.epoch)[self.position.batches]
        if len(chunk) < self.world_size:  # every process needs at least one example
            chunk = np.concatenate([chunk, self._first[: self.world_size - len(chunk)]])
        self.position = StreamPosition(self.position.epoch, self.position.batches + 1)
        return chunk[self.rank :: self.world_size].tolist()


def _cut(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[start : start + size] for start in range(0, len(order), size)]
