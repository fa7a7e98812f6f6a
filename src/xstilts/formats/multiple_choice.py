"""Multiple choice: each option is encoded with the context and gets one score.

The first segment is the context (followed by the question, when there is one);
the second is the option, after ``choice_prefix`` when the task has one (HellaSwag's
``ctx_b``, the start of the sentence every ending completes, as jiant encodes it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.formats.base import (
    Batch,
    FeatureOutputs,
    Outputs,
    PooledHead,
    TaskFormat,
    encoder_inputs,
    hidden_dropout,
    label_index,
)
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec


class MultipleChoice(TaskFormat):
    name = "multiple_choice"
    fields = FieldSpec(
        required=("context", "choices"), optional=("question", "choice_prefix", "label")
    )
    prediction_suffix = "jsonl"

    def check_row(self, spec: TaskSpec) -> RowCheck:
        expected = len(spec.labels)

        def check(row: dict[str, object]) -> dict[str, object]:
            choices = row["choices"]
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise ValueError(f"field 'choices' must be a list of texts, got {choices!r}")
            if len(choices) != expected:
                raise ValueError(f"expected {expected} choices, found {len(choices)}")
            row["label"] = label_index(row.get("label"), spec.labels)
            return row

        return check

    def encode(
        self,
        batch: dict[str, list[Any]],
        indices: list[int],
        *,
        tokenizer: PreTrainedTokenizerBase,
        spec: TaskSpec,
        max_length: int,
        training: bool = False,
    ) -> dict[str, list[Any]]:
        count = len(batch["context"])
        questions = batch.get("question") or [None] * count
        prefixes = batch.get("choice_prefix") or [None] * count
        firsts: list[str] = []
        seconds: list[str] = []
        for context, question, prefix, choices in zip(
            batch["context"], questions, prefixes, batch["choices"], strict=True
        ):
            first = f"{context} {question}" if question else context
            firsts.extend([first] * len(choices))
            seconds.extend(f"{prefix} {choice}" if prefix else choice for choice in choices)
        encoded = tokenizer(
            firsts, seconds, truncation=True, max_length=max_length, return_attention_mask=False
        )
        num_choices = len(spec.labels)
        features: dict[str, list[Any]] = {
            key: [values[i : i + num_choices] for i in range(0, len(values), num_choices)]
            for key, values in encoded.items()
        }
        features["labels"] = batch["label"]
        features["example_index"] = indices
        return features

    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        return PooledHead(encoder.config.hidden_size, 1, hidden_dropout(encoder))

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        inputs = encoder_inputs(batch)
        size, choices, length = inputs["input_ids"].shape
        flat = {key: value.view(size * choices, length) for key, value in inputs.items()}
        scores = head(encoder(**flat).last_hidden_state)
        return {"logits": scores.view(size, choices)}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"].float(), batch["labels"])

    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        return [spec.labels[int(np.argmax(out["logits"]))] for out in outputs]

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Sequence[Any]
    ) -> str:
        # XTREME-R's XCOPA layout: one JSON object per line with the chosen "label".
        lines = [json.dumps({"label": int(p) if p.isdigit() else p}) for p in predictions]
        return "".join(f"{line}\n" for line in lines)
