"""Housekeeping of a run folder: one process at a time, the state it was left in, and
the scratch that a killed atomic write leaves behind."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from xstilts.errors import DamagedFile, XstiltsError
from xstilts.experiment import evaluation_records
from xstilts.experiment.evaluation_records import PREDICTIONS_DIR, RESULTS_FILE
from xstilts.io import atomic_write_json

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
STATUS_FILE = "status.json"
SETTLED = ("best", "checkpoints/last")
"""Folders written by ``io.atomic_dir``, which keeps the previous version at ``<name>.old``
for the moment between its two renames."""


class RunLock:
    """An exclusive lock on a run folder for as long as a process works in it. The
    operating system releases it when the process dies, however it dies."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 500).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise XstiltsError(
                f"{self.folder} is in use by {holder}; wait for it to finish (or stop it) "
                "and run the same command again"
            ) from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}".encode())
        self.fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def mark(folder: Path, state: str, error: str | None = None) -> None:
    """Record how the last attempt at this folder ended ("finished" or "failed")."""
    entry: dict[str, Any] = {"state": state, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if error is not None:
        entry["error"] = error
    atomic_write_json(folder / STATUS_FILE, entry)


def read_status(folder: Path) -> dict[str, Any] | None:
    try:
        status = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def failed_runs(grid_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The run and intermediate folders of a grid whose last attempt failed."""
    found = []
    for kind in ("intermediate", "runs"):
        for folder in sorted((grid_dir / kind).glob("*/")):
            status = read_status(folder)
            if status is not None and status.get("state") == "failed":
                found.append((folder, status))
    return found


def describe(error: BaseException) -> str:
    """One line for a status file or a report."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, XstiltsError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def clean_scratch(folder: Path) -> list[Path]:
    """Remove what killed atomic writes left in a phase folder: hidden scratch folders
    and ``.tmp`` files (each may be a whole checkpoint), and the ``.old`` copy of a
    settled folder (restored instead if the new one never arrived)."""
    removed = []
    for place in (folder, folder / "checkpoints"):
        if not place.is_dir():
            continue
        for entry in place.iterdir():
            if entry.name == LOCK_FILE or not entry.name.startswith("."):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    for name in SETTLED:
        target = folder / name
        old = target.with_name(target.name + ".old")
        if old.is_dir() and target.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        elif old.is_dir():
            old.rename(target)
    return removed


@contextmanager
def marked(folder: Path) -> Iterator[None]:
    """Leave a status file saying how the work in ``folder`` ended."""
    try:
        yield
    except Exception as err:
        mark(folder, "failed", describe(err))
        raise
    mark(folder, "finished")


PHASES = ("intermediate", "target")
PHASE_FILES = ("best", "best.old", "checkpoints", "training.json")
STAGES_DIR = "stages"
"""The folder of a run's target stages (``target.stages``), one phase folder each."""


def restart(phase: str, run_dir: Path, inter_dir: Path | None) -> None:
    """Delete a phase's checkpoints, best model and record; the target phase starts
    from the intermediate one, so restarting that restarts both."""
    if phase not in PHASES:
        raise XstiltsError(f"--restart-phase {phase}: expected one of {', '.join(PHASES)}")
    if phase == "intermediate":
        if inter_dir is None:
            raise XstiltsError("--restart-phase intermediate: this run has no intermediate phase")
        with RunLock(inter_dir):  # not while another run trains it
            _remove(inter_dir, PHASE_FILES)
    _remove(run_dir, (*PHASE_FILES, STAGES_DIR, RESULTS_FILE, PREDICTIONS_DIR))
    evaluation_records.clear(run_dir)
    log.info("restarting the %s phase of %s", phase, run_dir.name)


def _remove(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def damage_hint(inter_dir: Path | None) -> Iterator[None]:
    """A damaged file of a phase: say which phase to restart instead of which folders
    to delete by hand."""
    try:
        yield
    except DamagedFile as err:
        inside = inter_dir is not None and inter_dir in Path(str(err.path)).parents
        phase = "intermediate" if inside else "target"
        raise XstiltsError(
            f"{err}; run the same command with --restart-phase {phase} to train that "
            "phase again from the start"
        ) from None
