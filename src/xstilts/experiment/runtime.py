"""The process-wide Accelerator and per-run log files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration

from xstilts.config import RuntimeConfig
from xstilts.processes import is_main
from xstilts.tracking import TRACKERS_DIR

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_accelerator(runtime: RuntimeConfig, tracking_dir: Path | None = None) -> Accelerator:
    """An Accelerator for this runtime; one process may run experiments of several precisions.

    With ``tracking_dir`` (a phase folder) it carries the trackers of ``runtime.log_with``,
    writing their files under that folder (xstilts/tracking.py opens and closes them).
    """
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, runtime.mixed_precision):
        # Accelerate refuses to change precision once initialised; tests and the demo run
        # several experiments in one process, so start its shared state afresh.
        AcceleratorState._reset_state(reset_partial_state=True)
    tracking: dict[str, Any] = {}
    if tracking_dir is not None and runtime.log_with:
        folder = tracking_dir / TRACKERS_DIR
        tracking = {
            "log_with": list(runtime.log_with),
            "project_config": ProjectConfiguration(
                project_dir=str(tracking_dir), logging_dir=str(folder)
            ),
        }
    return Accelerator(
        mixed_precision=runtime.mixed_precision,
        cpu=runtime.cpu,
        **tracking,
    )


def process_state(runtime: RuntimeConfig) -> PartialState:
    """This run's processes (one, or those a launcher started), before any Accelerator:
    the run-folder lock needs their barrier. DDP's options are set per phase, when the
    loop prepares its model (``train.loop``)."""
    return PartialState(cpu=runtime.cpu)


@contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy everything the xstilts loggers say into ``path`` while the block runs; among
    several processes only the main one writes the file (each line once)."""
    if not is_main():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("xstilts")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
