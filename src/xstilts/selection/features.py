"""A frozen encoder's features of a task's training features, and the labels LogME
fits on them, per format.

- classification: one row per example, the mean of the last layer's states under the
  attention mask; one target column per class (one-hot).
- multiple_choice: one row per (example, choice), pooled the same way; one binary
  column, 1 for the gold choice (the head scores each choice on its own, too).
- tagging: one row per word, the state of its first sub-word (the tokens the loss
  reads); one column per tag.
- span_qa: one row per token of each window; two binary columns, "answer starts here"
  and "answer ends here" (a window without the answer marks its first token, as the
  loss does). Each column is a linear regression over tokens, not the softmax over a
  window's positions that QA trains: a rough proxy, with one positive in ~100 rows.
- retrieval, mlm and dual_encoder targets have no labels of this kind: LogME on them is
  an error (a retrieval target with target stages is estimated on its first stage).

Data-only estimators (SEmb, TextEmb) read the same encoder inputs without labels:
``sequence_embeddings`` pools every input sequence a format makes (each choice of a
multiple-choice example, each window of a QA example).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel

from xstilts.errors import XstiltsError
from xstilts.features import feature_lengths
from xstilts.formats import TaskFormat
from xstilts.formats.base import Batch, encoder_inputs

LABELLED_FORMATS = ("classification", "multiple_choice", "tagging", "span_qa")
IGNORED = -100
INPUT_COLUMNS = ("input_ids", "token_type_ids")


@dataclass
class LabelledFeatures:
    features: np.ndarray
    """N x D float32."""
    targets: np.ndarray
    """N x C target columns (LogME averages its evidence over them)."""


def _batches(
    fmt: TaskFormat,
    features: datasets.Dataset,
    pad_token_id: int,
    batch_size: int,
    *,
    labelled: bool,
) -> Iterator[Batch]:
    """Collated batches of similar lengths (less padding; no estimator here depends on
    the order). Unlabelled: the encoder inputs alone, through the shared collate (a
    masked-LM format's own would mask tokens)."""
    order = np.argsort(feature_lengths(features), kind="stable")
    wanted = (*INPUT_COLUMNS, *(fmt.tensor_keys if labelled else ()))
    columns = [c for c in features.column_names if c in wanted]
    collate = fmt.collate if labelled else partial(TaskFormat.collate, fmt)
    for start in range(0, len(order), batch_size):
        rows = features.select(order[start : start + batch_size].tolist())
        yield collate({c: rows[c] for c in columns}, pad_token_id)


def _flat(batch: Batch) -> dict[str, torch.Tensor]:
    """Encoder inputs with the choices of a multiple-choice batch as rows of their own."""
    inputs = encoder_inputs(batch)
    if inputs["input_ids"].dim() == 3:
        length = inputs["input_ids"].shape[-1]
        return {key: value.reshape(-1, length) for key, value in inputs.items()}
    return inputs


def _hidden(encoder: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(encoder.parameters()).device
    moved = {key: value.to(device) for key, value in inputs.items()}
    return encoder(**moved).last_hidden_state.float().cpu()


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@torch.inference_mode()
def labelled_features(
    fmt: TaskFormat,
    encoder: PreTrainedModel,
    features: datasets.Dataset,
    pad_token_id: int,
    *,
    task: str,
    batch_size: int = 32,
) -> LabelledFeatures:
    """Features and LogME target columns of a task's training features (see the module
    docstring for what each format gives)."""
    if fmt.name not in LABELLED_FORMATS:
        raise XstiltsError(
            f"task '{task}': format '{fmt.name}' has no labels a feature-based estimator can "
            f"fit (it works on {', '.join(LABELLED_FORMATS)}); use --method semb or textemb"
        )
    encoder.eval()
    rows: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for batch in _batches(fmt, features, pad_token_id, batch_size, labelled=True):
        inputs = _flat(batch)
        hidden = _hidden(encoder, inputs)
        mask = inputs["attention_mask"]
        if fmt.name == "classification":
            rows.append(_mean_pool(hidden, mask).numpy())
            targets.append(batch["labels"].numpy()[:, None])
        elif fmt.name == "multiple_choice":
            rows.append(_mean_pool(hidden, mask).numpy())
            size, choices = batch["input_ids"].shape[:2]
            gold = np.zeros((size, choices))
            gold[np.arange(size), batch["labels"].numpy()] = 1.0
            targets.append(gold.reshape(-1, 1))
        elif fmt.name == "tagging":
            labels = batch["labels"]
            keep = labels != IGNORED
            rows.append(hidden[keep].numpy())
            targets.append(labels[keep].numpy()[:, None])
        else:  # span_qa
            keep = mask.bool()
            positions = torch.arange(mask.shape[1]).expand_as(mask)
            starts = positions == batch["start_positions"][:, None]
            ends = positions == batch["end_positions"][:, None]
            rows.append(hidden[keep].numpy())
            targets.append(torch.stack([starts[keep], ends[keep]], dim=1).double().numpy())
    if not rows:
        raise XstiltsError(f"task '{task}': no training features to estimate on")
    stacked = np.concatenate(targets)
    if fmt.name in ("classification", "tagging"):
        classes = stacked[:, 0].astype(np.int64)
        stacked = (classes[:, None] == np.unique(classes)[None, :]).astype(np.float64)
    return LabelledFeatures(np.concatenate(rows).astype(np.float32), stacked)


@dataclass
class SequenceEmbeddings:
    means: np.ndarray
    """One row per input sequence: the mean of its tokens' last-layer states."""
    tokens: np.ndarray
    """Tokens per sequence (the weights of a token-level mean)."""


@torch.inference_mode()
def sequence_embeddings(
    fmt: TaskFormat,
    encoder: PreTrainedModel,
    features: datasets.Dataset,
    pad_token_id: int,
    *,
    batch_size: int = 32,
) -> SequenceEmbeddings:
    """The mean-pooled last-layer state of every input sequence the format made."""
    encoder.eval()
    means: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for batch in _batches(fmt, features, pad_token_id, batch_size, labelled=False):
        inputs = _flat(batch)
        hidden = _hidden(encoder, inputs)
        means.append(_mean_pool(hidden, inputs["attention_mask"]).numpy())
        counts.append(inputs["attention_mask"].sum(1).numpy())
    return SequenceEmbeddings(np.concatenate(means), np.concatenate(counts))
