"""Progress that a person can read: bars on a terminal, log lines everywhere else.

Off a terminal (a pipe, a file, a batch job's log) a progress bar writes a frame per
update, joined by carriage returns, and a log becomes mostly bar frames. There, a
progress bar is replaced by ``IntervalLog``: one log line per interval (and none for
work that ends sooner), through the ``xstilts`` loggers, so it also lands in a run's
log file.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

from xstilts.processes import is_main

T = TypeVar("T")

LOG_INTERVAL_S = 30.0
"""Off a terminal: seconds between two progress lines of the same task."""

log = logging.getLogger("xstilts.progress")


def interactive() -> bool:
    """Whether progress bars render: stderr is a terminal, or this is a notebook."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress_bar(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm | IntervalLog[T]:
    """A tqdm bar on a terminal; elsewhere an ``IntervalLog`` with the same methods.
    Among several processes, only the main one shows progress."""
    if not is_main():
        kwargs["disable"] = True
    if interactive():
        kwargs.setdefault("mininterval", 0.2)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)
    return IntervalLog(
        iterable,
        total=kwargs.get("total"),
        desc=kwargs.get("desc") or "working",
        initial=kwargs.get("initial", 0),
        disable=bool(kwargs.get("disable", False)),
    )


class IntervalLog(Generic[T]):
    """Stands in for a tqdm bar off a terminal: ``update``, ``set_postfix``, ``close``
    and iteration, with a log line at most once per ``interval`` seconds."""

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None = None,
        desc: str = "working",
        initial: int = 0,
        disable: bool = False,
        interval: float = LOG_INTERVAL_S,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.disable, self.interval = total, desc, disable, interval
        self.n = self._start_n = initial
        self.postfix: dict[str, Any] = {}
        self._started = self._last = time.monotonic()

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None, "IntervalLog iterates only what it was given"
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self) -> IntervalLog[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            log.info("%s", self.line(now))

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        """Nothing to erase: the lines stay as they were written."""

    def line(self, now: float) -> str:
        """'train x: 120/400 (30%), 4.1/s, 68 s left, loss=0.61'."""
        elapsed = max(now - self._started, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        parts = [f"{self.desc}: {self.n}/{self.total}" if self.total else f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g}/s")
        if self.total and rate > 0:
            parts.append(f"{(self.total - self.n) / rate:.0f} s left")
        parts.extend(f"{key}={value}" for key, value in self.postfix.items())
        return ", ".join(parts)


def quiet_libraries() -> None:
    """Off a terminal, turn off the progress bars of datasets, the hub and transformers
    and transformers' advisory warnings (environment first, for libraries not yet
    imported and for worker processes; then the libraries already imported)."""
    if interactive():
        return
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
