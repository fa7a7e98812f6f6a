"""Deterministic, resumable streams of training batches.

The batches of epoch ``e`` are drawn from ``(seed, e)`` alone, so a stream's whole
state is two integers (epoch, batches taken) and a resumed run sees exactly the
batches an uninterrupted one would.

A batch is what one optimizer step trains on: ``batch_size`` examples, however many
processes share it and however many micro-batches (gradient accumulation) it is cut
into. Each step's batch is cut into ``micro_batches x world_size`` equal parts;
micro-batch m of process r is part ``m * world_size + r``. So the same config trains
the same steps on the same examples on one process or on N (a distributed sampler).

Given the examples' lengths, batches are length-grouped as the Hugging Face
Trainer's ``group_by_length`` does: shuffle, cut into mega-batches of up to 50
batches, sort each mega-batch by length (longest first), cut it into batches,
and shuffle the batches. A batch then pads to about its own examples' length instead
of the longest of a random draw. The batch holding the longest example comes first,
so a batch size too large for the device fails at the first step, not hours in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xstilts.errors import XstiltsError

MEGA_BATCH_FACTOR = 50
"""Batches per mega-batch, at most (the Trainer's value)."""


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
        micro_batches: int = 1,
        position: StreamPosition | None = None,
        lengths: np.ndarray | None = None,
    ) -> None:
        """``batch_size``: examples per step, over all processes and micro-batches;
        ``lengths``: each example's length, to group batches by length (None: random
        batches)."""
        if num_examples < 1:
            raise ValueError("a batch stream needs at least one example")
        if batch_size % (world_size * micro_batches):
            raise ValueError(
                f"a batch of {batch_size} does not split into {micro_batches} micro-batches "
                f"on each of {world_size} processes"
            )
        if lengths is not None and len(lengths) != num_examples:
            raise ValueError(f"{len(lengths)} lengths for {num_examples} examples")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.micro_batches = micro_batches
        self.position = position or StreamPosition()
        self.lengths = None if lengths is None else np.asarray(lengths)
        self._batches_epoch = -1
        self._batches: list[np.ndarray] = []
        self._first: np.ndarray = np.empty(0, dtype=np.int64)

    @property
    def parts(self) -> int:
        """Pieces a step's batch is cut into: a micro-batch of each process."""
        return self.world_size * self.micro_batches

    @property
    def micro_batch_size(self) -> int:
        """Examples in one micro-batch of one process (of a full batch)."""
        return self.batch_size // self.parts

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if epoch != self._batches_epoch:
            seeds = [*self.seed, epoch] if isinstance(self.seed, list) else [self.seed, epoch]
            rng = np.random.default_rng(seeds)
            order = rng.permutation(self.num_examples)
            self._first = order[: self.parts]
            if self.lengths is None:
                self._batches = _cut(order, self.batch_size)
            else:
                self._batches = self._grouped(order, rng)
            self._batches_epoch = epoch
        return self._batches

    def _grouped(self, order: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        assert self.lengths is not None
        batches: list[np.ndarray] = []
        for mega in _cut(order, MEGA_BATCH_FACTOR * self.batch_size):
            # Stable sort: ties keep their shuffled order, the same on every platform.
            longest_first = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(_cut(longest_first, self.batch_size))
        shuffled = [batches[i] for i in rng.permutation(len(batches))]
        longest = max(range(len(shuffled)), key=lambda i: self.lengths[shuffled[i][0]])
        shuffled[0], shuffled[longest] = shuffled[longest], shuffled[0]
        return shuffled

    def next_step(self) -> list[list[int]]:
        """This process's micro-batches of the next step (indices of examples)."""
        if self.position.batches >= self.batches_per_epoch:
            self.position = StreamPosition(self.position.epoch + 1, 0)
        chunk = self._epoch_batches(self.position.epoch)[self.position.batches]
        if len(chunk) < self.parts:  # every micro-batch needs at least one example
            chunk = np.concatenate([chunk, self._first[: self.parts - len(chunk)]])
        self.position = StreamPosition(self.position.epoch, self.position.batches + 1)
        pieces = np.array_split(chunk, self.parts)  # a short last batch: near-equal parts
        return [
            pieces[micro * self.world_size + self.rank].tolist()
            for micro in range(self.micro_batches)
        ]

    def next_indices(self) -> list[int]:
        """This process's share of the next step's batch, its micro-batches joined."""
        return [index for micro in self.next_step() for index in micro]


def _cut(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[start : start + size] for start in range(0, len(order), size)]


def micro_batch_size(key: str, batch_size: int, accumulation: int, processes: int) -> int:
    """Examples each process runs at a time: ``batch_size`` (examples per optimizer
    step) shared by ``processes`` x ``accumulation`` micro-batches. ``key`` names the
    config section in the error when they do not share it equally."""
    parts = processes * accumulation
    if batch_size % parts == 0:
        return batch_size // parts
    below, above = batch_size // parts * parts, (batch_size // parts + 1) * parts
    choices = " or ".join(str(n) for n in (below, above) if n > 0)
    raise XstiltsError(
        f"{key}: batch_size {batch_size} (examples per optimizer step) cannot be shared "
        f"equally by {processes} processes x {accumulation} gradient_accumulation_steps; "
        f"use a multiple of {parts} ({choices}), or change gradient_accumulation_steps"
    )
