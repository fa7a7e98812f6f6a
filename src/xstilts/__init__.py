"""xstilts: English intermediate-task training for zero-shot cross-lingual transfer.

The Python API (`xstilts.api`) is loaded on first use, so importing xstilts stays
cheap: ``xstilts.run``, ``xstilts.run_grid``, ``xstilts.results``,
``xstilts.write_report`` and ``xstilts.select``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xstilts.errors import XstiltsError

__version__ = "0.1.0"

__all__ = [
    "ConfigPayload",
    "ExperimentResult",
    "GridResult",
    "SelectionResult",
    "XstiltsError",
    "__version__",
    "read_config",
    "results",
    "run",
    "run_grid",
    "select",
    "write_report",
]
_API = frozenset(__all__) - {"XstiltsError", "__version__"}
"""Loaded from xstilts.api on first use."""

if TYPE_CHECKING:
    from xstilts.api import (
        ConfigPayload,
        ExperimentResult,
        GridResult,
        SelectionResult,
        read_config,
        results,
        run,
        run_grid,
        select,
        write_report,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from xstilts import api

        return getattr(api, name)
    raise AttributeError(f"module 'xstilts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
