"""The ``selection`` section of a grid: which estimator ranks the intermediate options
of each target, and (budget mode) how many of them are trained on it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from xstilts.config import StrictModel

Method = Literal["logme", "semb", "textemb", "fewshot", "size"]
METHODS: tuple[str, ...] = ("logme", "semb", "textemb", "fewshot", "size")


class SelectionSettings(StrictModel):
    method: Method = Field("logme", description="The estimator that ranks the options.")
    top_k: int | None = Field(
        None,
        gt=0,
        description="Budget mode: train each target only from its top-K options (and the "
        "baseline). Unset: every option, as without a selection section.",
    )
    max_examples: int = Field(
        1000,
        gt=0,
        description="Training examples of each dataset an estimator reads (a random subset).",
    )
    batch_size: int = Field(32, gt=0, description="Sequences per forward pass.")
    fewshot_steps: int = Field(10, gt=0, description="fewshot: target training steps.")
    fewshot_validation_examples: int = Field(
        200, gt=0, description="fewshot: English validation examples it ranks by."
    )


EVALUATION_FILE = "selection/evaluation.json"
"""Where ``xstilts select --evaluate`` keeps its comparison, under the grid's folder
(the report's predicted-against-measured table and figure read it)."""
