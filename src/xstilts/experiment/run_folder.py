"""Housekeeping of a run folder: one process at a time, the state it was left in, and
the scratch that a killed atomic write leaves behind."""

from __future__ import annotations

import errno
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
from typing import Any, Protocol

from xstilts.errors import DamagedFile, XstiltsError
from xstilts.experiment import evaluation_records
from xstilts.experiment.evaluation_records import PREDICTIONS_DIR, RESULTS_FILE
from xstilts.io import atomic_write_json
from xstilts.processes import is_main

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HELD_FILE = ".lock.held"
"""The lock where the filesystem has no flock (see ``RunLock``)."""
STATUS_FILE = "status.json"
SETTLED = ("best", "checkpoints/last")
"""Folders written by ``io.atomic_dir``, which keeps the previous version at ``<name>.old``
for the moment between its two renames."""


class Processes(Protocol):
    """The processes of one run (an ``accelerate.PartialState`` or ``Accelerator``)."""

    @property
    def is_main_process(self) -> bool: ...

    @property
    def num_processes(self) -> int: ...

    def wait_for_everyone(self) -> None: ...


NO_FLOCK = (errno.ENOSYS, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP)
"""What ``flock`` raises on a filesystem without it (Lustre without the flock option)."""


class RunLock:
    """An exclusive lock on a run folder for as long as a run works in it.

    One lock per run: with several processes (``processes``), the main one takes it
    while the others wait at a barrier, and all leave it together. Where the filesystem
    has ``flock`` (local disks, NFSv4 on Linux), the operating system releases it when
    the process dies, however it dies. Where it has not (Lustre without the ``flock``
    mount option), the lock is a file created exclusively (``HELD_FILE``) naming its
    holder; a later process takes it over only when the holder is provably gone (same
    host, no such process), else says which file to delete.
    """

    def __init__(self, folder: Path, processes: Processes | None = None) -> None:
        self.folder = folder
        self.processes = processes if processes and processes.num_processes > 1 else None
        self.fd: int | None = None
        self.held: tuple[Path, dict[str, Any]] | None = None
        """The lock file and what this process wrote into it (no flock)."""

    def __enter__(self) -> RunLock:
        if self.processes is None:
            self._acquire()
            return self
        from accelerate.utils import broadcast_object_list

        error: XstiltsError | None = None
        if self.processes.is_main_process:
            try:
                self._acquire()
            except XstiltsError as err:
                error = err
        locked = broadcast_object_list([error is None])[0]
        if error is not None:
            raise error
        if not locked:
            raise XstiltsError(f"the main process could not lock {self.folder} (see its error)")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # A failing process leaves at once: waiting for the others could wait forever.
        if self.processes is not None and error is None:
            self.processes.wait_for_everyone()
        self._release()

    def _acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 500).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise XstiltsError(
                f"{self.folder} is in use by {holder}; wait for it to finish (or stop it) "
                "and run the same command again"
            ) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in NO_FLOCK:
                raise
            log.debug("no flock on %s (%s): locking with %s", self.folder, err, HELD_FILE)
            self.held = _claim(self.folder / HELD_FILE)
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {_now()}".encode())
        self.fd = fd

    def _release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        if self.held is not None:
            path, mine = self.held
            if _read_holder(path) == mine:  # not one taken over by another process
                path.unlink(missing_ok=True)
            self.held = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _claim(path: Path) -> tuple[Path, dict[str, Any]]:
    """Create ``path`` exclusively, naming this process; take it over from a holder that
    is provably gone."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _read_holder(path)
            if holder is None or not _gone(holder):
                raise XstiltsError(_held_message(path, holder)) from None
            log.warning("taking over %s: process %s on this host is gone", path, holder["pid"])
            path.unlink(missing_ok=True)
            continue
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        return path, me
    raise XstiltsError(_held_message(path, _read_holder(path)))


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"host", "pid"} <= holder.keys() else None


def _gone(holder: dict[str, Any]) -> bool:
    """Whether the holder is provably dead: on this host, with no such process."""
    if holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _held_message(path: Path, holder: dict[str, Any] | None) -> str:
    folder = path.parent
    if holder is None:
        return (
            f"{folder} is locked by {path}, which names no holder; if no xstilts process "
            "works on this folder any more, delete that file and run the same command again"
        )
    who = f"process {holder['pid']} on {holder['host']} since {holder.get('since', '?')}"
    if holder["host"] == socket.gethostname():
        return (
            f"{folder} is in use by {who}; wait for it to finish (or stop it) and run the "
            "same command again"
        )
    return (
        f"{folder} is in use by {who} (another host, whose processes this one cannot "
        f"see; the lock is the file {path}, as this filesystem has no flock); if no "
        f"xstilts process on {holder['host']} works on it any more, delete {path} and "
        "run the same command again"
    )


def mark(folder: Path, state: str, error: str | None = None) -> None:
    """Record how the last attempt at this folder ended ("finished" or "failed"); among
    several processes, the main one writes it."""
    if not is_main():
        return
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
    settled folder (restored instead if the new one never arrived). Only the main
    process cleans (the others wait for it at the run lock's barrier)."""
    removed: list[Path] = []
    if not is_main():
        return removed
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
    if phase == "intermediate" and inter_dir is None:
        raise XstiltsError("--restart-phase intermediate: this run has no intermediate phase")
    if not is_main():
        return
    if phase == "intermediate":
        assert inter_dir is not None
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
