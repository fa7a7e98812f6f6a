"""The protocol every format implements, and the pieces formats share.

A format owns everything specific to one kind of task: how examples become
features, which head sits on the encoder, the loss, and how model outputs
become predictions in the task's label space. The loop, the evaluator and the
pipeline only ever talk to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.metrics import get_metric
from xstilts.tasks.loading import FieldSpec, RowCheck, random_subsample
from xstilts.tasks.spec import TaskSpec

Batch = dict[str, torch.Tensor]
Outputs = dict[str, torch.Tensor]
FeatureOutputs = list[dict[str, np.ndarray]]
"""Model outputs of each feature, in feature order, as float32 arrays."""

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
UNLABELLED = -1


class TaskFormat(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "2"
    """Part of the feature cache key: bump it when ``encode`` changes its output."""
    fields: ClassVar[FieldSpec]
    prediction_suffix: ClassVar[str]
    trainable: ClassVar[bool] = True
    """False for formats evaluated straight from the encoder (zero-shot retrieval)."""
    predicts_tokens: ClassVar[bool] = False
    """True when the head maps hidden states back to the vocabulary (masked LM): an
    invertible language adapter (MAD-X) then runs in reverse before it."""
    default_options: ClassVar[Mapping[str, Any]] = {}
    """Format options a task spec (``options``) may set, with their defaults."""

    def options(self, spec: TaskSpec) -> dict[str, Any]:
        unknown = sorted(set(spec.options) - set(self.default_options))
        if unknown:
            allowed = ", ".join(sorted(self.default_options)) or "none"
            raise XstiltsError(
                f"task '{spec.name}': unknown option(s) {', '.join(unknown)} for format "
                f"'{self.name}' (allowed: {allowed})"
            )
        return {**self.default_options, **spec.options}

    def needs_calibration(self, spec: TaskSpec) -> bool:
        """True if predictions need a setting fitted on each language's validation split."""
        return False

    # -- examples -> features -------------------------------------------------
    def check_row(self, spec: TaskSpec) -> RowCheck:
        """Validate and normalise one example; raise ValueError with the reason."""
        return lambda row: row

    def subsample(self, examples: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
        """At most ``size`` examples at random (``max_examples`` and
        ``max_train_examples`` settings)."""
        return random_subsample(examples, size, seed)

    def is_labelled(self, spec: TaskSpec, row: dict[str, object]) -> bool:
        """Whether a checked row carries its gold label (training and validation rows
        must, unless their source drops them with ``drop_labels``)."""
        return row.get("label") != UNLABELLED

    def prepare_training_examples(
        self, spec: TaskSpec, examples: datasets.Dataset
    ) -> tuple[datasets.Dataset, dict[str, int]]:
        """Training-only filtering; returns the kept examples and counts of skipped ones."""
        return examples, {}

    @abstractmethod
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
        """Batched: examples (columns) -> features (columns); any number of features each.

        ``training`` features only feed the loss; the others must also carry what
        ``predict`` needs to map outputs back to examples.
        """

    def collate(self, batch: dict[str, list[Any]], pad_token_id: int) -> Batch:
        """Columns of several features -> padded tensors (to the longest in the batch).

        Features are stored unpadded and without an attention mask (it would be all
        ones); the mask is made here from the lengths.
        """
        pad_values = {"input_ids": pad_token_id, "token_type_ids": 0}
        tensors: Batch = {}
        for key, values in batch.items():
            if key in pad_values:
                tensors[key] = pad_nested(values, pad_values[key])
            elif key in self.tensor_keys:
                tensors[key] = torch.tensor(values)
        tensors["attention_mask"] = pad_nested(_ones_like(batch["input_ids"]), 0)
        return tensors

    tensor_keys: ClassVar[tuple[str, ...]] = ("labels",)

    def shared_features(self, spec: TaskSpec, features: datasets.Dataset) -> np.ndarray | None:
        """Indices of evaluation features that every language of the task may hold
        alike (a candidate pool searched from each language): the evaluator runs them
        once and reuses their outputs while the same tokens come again. None: none."""
        return None

    # -- model ------------------------------------------------------------------
    @abstractmethod
    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        """A freshly initialised head for ``spec`` on top of ``encoder``."""

    @abstractmethod
    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        """Run encoder and head on a collated batch."""

    @abstractmethod
    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        """Scalar training loss."""

    def distributions(self, outputs: Outputs, batch: Batch) -> list[torch.Tensor]:
        """The output's categorical distributions as logits, one row per distribution
        (the last axis is the categories): what smoothness regularisers (SMART, R3F)
        compare between a clean and a perturbed forward pass."""
        return [outputs["logits"]]

    # -- outputs -> predictions -> scores ----------------------------------------
    @abstractmethod
    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """One prediction per example, in the task's label space."""

    def calibrate(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
    ) -> dict[str, Any]:
        """Fit prediction settings on a validation split (see ``needs_calibration``);
        the result is passed to ``predict`` and saved with the scores."""
        raise NotImplementedError(f"format '{self.name}' needs no calibration")

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        """Gold answers in the same space as ``predict``; None if the split is unlabelled."""
        labels = examples["label"]
        if all(label == UNLABELLED for label in labels):
            return None
        return [spec.labels[label] if label != UNLABELLED else None for label in labels]

    def score(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        predictions: Sequence[Any],
        language: str = "en",
    ) -> dict[str, float] | None:
        """Scores of the labelled examples with the task's metric; None if none is labelled."""
        references = self.references(spec, examples)
        if references is None:
            return None
        pairs = [(p, r) for p, r in zip(predictions, references, strict=True) if r is not None]
        predicted, gold = zip(*pairs, strict=True)
        metric = get_metric(spec.metric)
        extra = {"language": language} if getattr(metric, "needs_language", False) else {}
        return metric.score(list(predicted), list(gold), **extra)

    @abstractmethod
    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Sequence[Any]
    ) -> str:
        """The text of a prediction file in the XTREME submission layout of this format."""


def pad_nested(values: list[Any], pad_value: int) -> torch.Tensor:
    """Pad lists of token ids (2-D) or lists of lists (3-D) to the longest sequence."""
    if values and values[0] and isinstance(values[0][0], list):
        sizes = {len(group) for group in values}
        if len(sizes) != 1:
            raise ValueError(f"every example in a batch needs as many choices; got {sizes}")
        flat = pad_nested([seq for group in values for seq in group], pad_value)
        return flat.view(len(values), sizes.pop(), -1)
    longest = max(len(v) for v in values)
    padded = torch.full((len(values), longest), pad_value, dtype=torch.long)
    for row, seq in enumerate(values):
        padded[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return padded


def _ones_like(values: list[Any]) -> list[Any]:
    if values and values[0] and isinstance(values[0][0], list):
        return [_ones_like(group) for group in values]
    return [[1] * len(seq) for seq in values]


def encoder_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    return {key: batch[key] for key in ENCODER_INPUTS if key in batch}


def subsample_search(
    examples: datasets.Dataset,
    size: int,
    seed: int,
    is_query: Sequence[bool],
    relevant: Sequence[Sequence[str]],
) -> datasets.Dataset:
    """``size`` queries at random and a pool of ``size`` candidates that holds every
    candidate relevant to them (then others at random), in their original order: a
    smaller search of the same kind, never queries whose answers were dropped."""
    queries = [i for i, query in enumerate(is_query) if query]
    if len(queries) <= size:
        return examples
    rng = np.random.default_rng(seed)
    chosen = rng.choice(queries, size, replace=False).tolist()
    wanted = {rid for i in chosen for rid in relevant[i]}
    ids = examples["id"]
    pool = [i for i, query in enumerate(is_query) if not query]
    needed = [i for i in pool if ids[i] in wanted]
    others = [i for i in pool if ids[i] not in wanted]
    fill = min(max(0, size - len(needed)), len(others))
    extra = rng.choice(others, fill, replace=False).tolist() if fill else []
    return examples.select(sorted(chosen + needed + extra))


def label_index(raw: object, labels: Sequence[str]) -> int:
    """The index of a raw label in the task's label names.

    A raw value matching a label name wins; otherwise an integer (hub datasets
    store ClassLabel indices) is taken as the index. Anything else is an error.
    """
    if raw is None or raw == "":
        return UNLABELLED
    text = str(raw)
    if text in labels:
        return labels.index(text)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(labels):
        return raw
    raise ValueError(f"label {text!r} is not one of the task's labels ({', '.join(labels)})")


def hidden_dropout(encoder: PreTrainedModel) -> float:
    return float(getattr(encoder.config, "hidden_dropout_prob", 0.1))


class PooledHead(nn.Module):
    """dense + tanh over the first token's state, then a linear layer (RoBERTa-style)."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = self.dropout(hidden_states[:, 0])
        pooled = self.dropout(torch.tanh(self.dense(pooled)))
        return self.out(pooled)


def first_token_logits(encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> torch.Tensor:
    hidden = encoder(**encoder_inputs(batch)).last_hidden_state
    return head(hidden)
