"""Atomic file and folder writes: a crash leaves the old version or the new one, never half."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from xstilts.errors import DamagedFile, DiskFull, XstiltsError

READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)
"""What reading back a truncated or corrupt model or checkpoint file raises."""


@contextmanager
def reading_back(path: Path) -> Iterator[None]:
    """Read a file this project wrote: if it is truncated or corrupt, say so by name."""
    try:
        yield
    except READ_ERRORS as err:
        raise DamagedFile(path, err) from None


def read_utf8(path: Path) -> str:
    """A text file's content, or one error naming the file and the first line that is
    not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise XstiltsError(not_utf8_message(path, err)) from None


def not_utf8_message(path: Path, err: UnicodeDecodeError) -> str:
    line = first_non_utf8_line(path)
    where = f"{path}:{line}" if line is not None else str(path)
    bad = err.object[err.start : err.start + 1] if isinstance(err.object, bytes) else b""
    return f"{where}: not UTF-8 text (byte {bad!r}); save the file as UTF-8"


def first_non_utf8_line(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except OSError:
        return None
    return None


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the quota) is full; safetensors' writer says
    so only in its message."""
    if isinstance(error, OSError):
        return error.errno in NO_SPACE
    text = str(error)
    return isinstance(error, SafetensorError) and any(
        f"os error {code})" in text for code in NO_SPACE
    )


@contextmanager
def space_checked(folder: Path) -> Iterator[None]:
    """Turn a write's full-disk error into ``DiskFull`` naming ``folder``."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        if is_disk_full(err):
            raise DiskFull(folder) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with space_checked(path.parent):
        _write_text(path, text)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's files are private
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder; on success it replaces ``target`` in two renames.

    Between the renames the previous version sits at ``<target>.old``, which
    ``settled_dir`` picks up if the process dies right there.
    """
    scratch = _scratch_beside(target)
    try:
        with space_checked(target.parent):
            yield scratch
            fsync_tree(scratch)  # a crash after the rename must not find truncated files
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)  # and the space it took comes back
        raise
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def published_once(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that becomes ``target`` unless another process published
    it first, in which case the scratch is discarded.

    For folders named by a hash of what they hold (shared caches): every writer would
    write the same thing, so the first one wins, and a reader that found ``target``
    never sees it moved aside, as ``atomic_dir``'s replacing rename would do.
    """
    scratch = _scratch_beside(target)
    try:
        with space_checked(target.parent):
            yield scratch
            fsync_tree(scratch)
        try:
            scratch.rename(target)  # fails on Linux if target is a folder with files
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
                raise
        else:
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a no-op once renamed


def _scratch_beside(target: Path) -> Path:
    """A fresh hidden folder next to ``target``, on its filesystem (so a rename publishes)."""
    with space_checked(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        return make_scratch_dir(target.parent, f".{target.name}.")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_scratch_dir(parent: Path, prefix: str) -> Path:
    """A fresh hidden folder with the permissions a plain mkdir would give (mkdtemp's
    are private, whatever the umask)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~current_umask())
    return path


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root``, then the folders, so that a rename that follows
    cannot publish data a crash would lose."""
    folders = [root]
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            folders.append(path)
            continue
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    for folder in reversed(folders):
        fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settled_dir(target: Path) -> Path | None:
    """The complete version of a folder written by ``atomic_dir``, if there is one."""
    if target.is_dir():
        return target
    old = target.with_name(target.name + ".old")
    return old if old.is_dir() else None
