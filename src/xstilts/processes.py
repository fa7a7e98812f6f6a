"""Which of several processes this one is, when a launcher (``torchrun``, ``accelerate
launch``) started several: read from the launcher's environment, so it is known before
any process group exists (the command line's logging, the run-folder lock)."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """The one process that writes files, logs and prints tables."""
    return rank() == 0


def rank_label() -> str:
    """'rank 1: ' among several processes, '' for one."""
    return f"rank {rank()}: " if world_size() > 1 else ""
