"""What a study's report answers first: the ``report`` section of a grid, saved in the
grid folder (``report.json``) when the grid runs, read back by ``xstilts report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from xstilts.config import StrictModel
from xstilts.errors import XstiltsError


class Comparison(StrictModel):
    """One comparison a study's report makes besides every option against the baseline."""

    option: str = Field(description="The option label tested.")
    against: str | list[str] = Field(
        description="An option label, or a list of them (see 'choose')."
    )
    choose: Literal["each", "best"] = Field(
        "each",
        description="With a list: 'each' tests the option against every one of them; "
        "'best' against the one with the best mean English validation score of target "
        "training, chosen per target (never on test scores).",
    )


class ReportSpec(StrictModel):
    """What a study's report answers first: its question, the headline metric and the
    comparisons its question needs."""

    question: str | None = Field(None, description="The study's question, in one sentence.")
    metric: str = Field(
        "score",
        description="The per-language number options are compared by: 'score' (the XTREME "
        "task score) or any metric key the runs record (e.g. f1).",
    )
    baseline: str | None = Field(
        None,
        description="The baseline's option label; unset: the one option with no "
        "intermediate phase and no variant.",
    )
    comparisons: list[Comparison] = Field(
        default_factory=list, description="Comparisons besides each option against the baseline."
    )
    correction: Literal["holm", "bh", "none"] = Field(
        "holm",
        description="Multiple-comparison correction within each table: Holm (family-wise "
        "error), Benjamini-Hochberg (false discovery rate) or none.",
    )


REPORT_SPEC_FILE = "report.json"
"""The grid's report section, saved in the grid folder when the grid runs."""


def saved_report_spec(grid_dir: Path) -> ReportSpec | None:
    """The report section saved with a grid's runs; None for a folder without one."""
    path = grid_dir / REPORT_SPEC_FILE
    if not path.is_file():
        return None
    try:
        return ReportSpec.model_validate(json.loads(path.read_text("utf-8")))
    except (ValueError, ValidationError) as err:
        raise XstiltsError(f"{path}: not a report section of a grid ({err})") from None
