"""Measured seconds of a finished target run, read from its log: the time between the
first and last line of each attempt (an attempt starts at the pipeline's 'run FOLDER'
line), summed over attempts, so a run stopped and resumed later counts its work, not
the pause."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

LOG_FILE = "run.log"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_START = re.compile(r" xstilts\.experiment\.pipeline: run /")


def run_seconds(run_dir: Path) -> float | None:
    """None when the run has no log with time stamps."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return None
    total, first, last = 0.0, None, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        found = _STAMP.match(line)
        if found is None:
            continue
        stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        stamp += int(found.group(2)) / 1000
        if _START.search(line) and first is not None and last is not None:
            total += last - first
            first = None
        first = stamp if first is None else first
        last = stamp
    if first is None or last is None:
        return None
    return total + last - first
