"""Masked language modelling on plain text (continued pretraining as an intermediate task).

Masking follows BERT / XLM-R pretraining: each non-special token is chosen with
probability 15%; a chosen token becomes the mask token 80% of the time, a random
token id 10% of the time and stays unchanged 10% of the time. Labels are the
original ids at chosen positions and -100 everywhere else.

Masks are made in ``collate``, not stored:

* Training features get new masks every time they are batched (dynamic masking,
  as RoBERTa), drawn from the *global* torch RNG. The loop saves and restores that
  RNG in its checkpoints, so a resumed run draws the same masks as an unbroken one.
* Evaluation features (encoded with ``training=False``) carry ``example_index``;
  its presence is what tells ``collate`` (and ``forward``) that the batch is for
  evaluation. Each such feature is masked with its own ``torch.Generator`` seeded
  from its example index, so a validation split is masked the same way at every
  evaluation, whatever the batch size or order, and scores do not jitter.

``collate`` only receives the pad token id, so every feature also stores the
tokenizer's ``mask_token_id`` and ``vocab_size`` (the range of random replacement
ids) as integer columns, and its ``special_tokens_mask`` (never masked).

The head is the encoder's own pretrained MLM head (``lm_head`` of XLM-R, ``cls`` of
BERT), with its output projection tied to the encoder's input embeddings when the
model ties them. MLM is never a target task: predictions are per-example counts of
masked and correctly predicted tokens, scored as masked-token accuracy (percent,
metric ``mlm_accuracy``); a prediction file lists each example's accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.formats.base import (
    Batch,
    FeatureOutputs,
    Outputs,
    TaskFormat,
    encoder_inputs,
    pad_nested,
)
from xstilts.metrics import get_metric
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

IGNORE_INDEX = -100
MASK_PROBABILITY = 0.15
MASK_TOKEN_SHARE = 0.8
RANDOM_TOKEN_SHARE = 0.1
METRIC = "mlm_accuracy"
EVAL_CHUNK = 512
"""Masked positions scored at once in evaluation: bounds the [positions, vocab] logits."""


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    mask_token_id: torch.Tensor,
    vocab_size: torch.Tensor,
    draws: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked inputs and labels from uniform draws in [0, 1).

    ``input_ids`` and ``special_tokens_mask`` are [batch, length] (padding marked
    special), ``mask_token_id`` and ``vocab_size`` [batch], and ``draws``
    [3, batch, length] float64: whether a token is chosen, what it becomes, and
    which random id replaces it.
    """
    chosen = (draws[0] < MASK_PROBABILITY) & ~special_tokens_mask.bool()
    to_mask = chosen & (draws[1] < MASK_TOKEN_SHARE)
    to_random = chosen & (draws[1] >= MASK_TOKEN_SHARE)
    to_random &= draws[1] < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE
    vocab = vocab_size.to(torch.float64)[:, None]
    random_ids = (draws[2] * vocab).long().clamp_max(vocab_size[:, None] - 1)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = torch.where(to_mask, mask_token_id[:, None].expand_as(input_ids), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


class MaskedLMHead(nn.Module):
    """The non-base child of a ``*ForMaskedLM`` model: hidden states -> vocabulary logits."""

    def __init__(self, name: str, module: nn.Module, output_path: str | None = None) -> None:
        super().__init__()
        self.child_name = name
        self.add_module(name, module)
        self.output_path = output_path
        """Where its output embeddings (the vocabulary projection) sit inside it."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.child_name)(hidden_states)

    def get_output_embeddings(self) -> nn.Module | None:
        """The vocabulary projection, the head's last layer (after its transform)."""
        return None if self.output_path is None else self.get_submodule(self.output_path)


class MaskedLM(TaskFormat):
    name = "mlm"
    predicts_tokens = True
    fields = FieldSpec(required=("text",))
    prediction_suffix = "tsv"
    tensor_keys = ("mask_token_id", "vocab_size", "example_index")

    def check_row(self, spec: TaskSpec) -> RowCheck:
        if spec.metric != METRIC:
            raise XstiltsError(
                f"task '{spec.name}': format 'mlm' is scored with metric '{METRIC}', "
                f"not '{spec.metric}'"
            )

        def check(row: dict[str, object]) -> dict[str, object]:
            if not isinstance(row.get("text"), str):
                raise ValueError(f"field 'text' must be text, got {row.get('text')!r}")
            return row

        return check

    # -- examples -> features -------------------------------------------------
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
        if tokenizer.mask_token_id is None:
            raise XstiltsError(f"task '{spec.name}': the tokenizer has no mask token")
        encoded = tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_special_tokens_mask=True,
        )
        count = len(encoded["input_ids"])
        features = {
            "input_ids": encoded["input_ids"],
            "special_tokens_mask": encoded["special_tokens_mask"],
            "mask_token_id": [tokenizer.mask_token_id] * count,
            "vocab_size": [len(tokenizer)] * count,
        }
        if not training:
            # Also the evaluation flag: collate masks these deterministically.
            features["example_index"] = list(indices)
        return features

    def collate(self, batch: dict[str, list[Any]], pad_token_id: int) -> Batch:
        tensors = super().collate(batch, pad_token_id)
        input_ids = tensors["input_ids"]
        # Padding counts as special: never chosen.
        special = pad_nested(batch["special_tokens_mask"], 1).bool()
        if "example_index" in tensors:
            # Padding draws 1.0: never chosen (it is special anyway).
            draws = torch.ones((3, *input_ids.shape), dtype=torch.float64)
            for row, (index, ids) in enumerate(
                zip(batch["example_index"], batch["input_ids"], strict=True)
            ):
                draws[:, row, : len(ids)] = _feature_draws(int(index), len(ids))
        else:
            draws = torch.rand((3, *input_ids.shape), dtype=torch.float64)
        tensors["input_ids"], tensors["labels"] = mask_tokens(
            input_ids, special, tensors.pop("mask_token_id"), tensors.pop("vocab_size"), draws
        )
        return tensors

    # -- model ------------------------------------------------------------------
    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        return masked_lm_head(encoder)

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        hidden = encoder(**encoder_inputs(batch)).last_hidden_state
        chosen = batch["labels"] != IGNORE_INDEX
        states = hidden[chosen]  # [masked positions, hidden], row-major like labels[chosen]
        if "example_index" not in batch:
            return {"logits": head(states)}
        # Evaluation: per-feature counts only, never [.., vocab] logits of a whole batch.
        gold = batch["labels"][chosen]
        hits = torch.cat(
            [
                head(states[start : start + EVAL_CHUNK]).argmax(-1)
                == gold[start : start + EVAL_CHUNK]
                for start in range(0, len(states), EVAL_CHUNK)
            ]
            or [gold.new_zeros(0, dtype=torch.bool)]
        )
        correct = torch.zeros_like(chosen)
        correct[chosen] = hits
        return {"masked": chosen.sum(dim=1), "correct": correct.sum(dim=1)}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        logits = outputs["logits"]
        if logits.shape[0] == 0:  # nothing masked in this batch: a zero that keeps the graph
            return logits.float().sum() * 0.0
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        return F.cross_entropy(logits.float(), targets)

    # -- outputs -> predictions -> scores ----------------------------------------
    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Per example: ``{"masked": n, "correct": k}`` (one feature per example)."""
        predictions: list[dict[str, int]] = [{"masked": 0, "correct": 0} for _ in examples]
        for index, out in zip(features["example_index"], outputs, strict=True):
            predictions[index]["masked"] += int(out["masked"])
            predictions[index]["correct"] += int(out["correct"])
        return predictions

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        """Text is its own label: every example is labelled (never None)."""
        return list(examples["text"])

    def score(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        predictions: Sequence[Any],
        language: str = "en",
    ) -> dict[str, float] | None:
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions but {len(examples)} examples")
        correct = [p["correct"] for p in predictions]
        masked = [p["masked"] for p in predictions]
        return get_metric(METRIC).score(correct, masked)

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Sequence[Any]
    ) -> str:
        """One line per example: its masked-token accuracy in percent ("-" if none masked)."""
        lines = []
        for p in predictions:
            lines.append(f"{100.0 * p['correct'] / p['masked']:.2f}" if p["masked"] else "-")
        return "".join(f"{line}\n" for line in lines)


def _feature_draws(example_index: int, length: int) -> torch.Tensor:
    """[3, length] draws of one evaluation feature, from a generator seeded by its index.

    Drawn for the feature's own length, so its masks do not depend on the batch
    it lands in (the other features' lengths, the batch size or order).
    """
    generator = torch.Generator().manual_seed(example_index)
    return torch.rand((3, length), generator=generator, dtype=torch.float64)


def masked_lm_head(encoder: PreTrainedModel) -> MaskedLMHead:
    """The pretrained MLM head of ``encoder``'s model (random for a model built from a
    config), its output projection tied to ``encoder``'s input embeddings when the
    config ties them."""
    config = encoder.config
    name = getattr(config, "_name_or_path", "") or ""
    if name:
        # The same files as the encoder: pin the hub commit it was loaded from.
        revision = getattr(config, "_commit_hash", None)
        try:
            full = AutoModelForMaskedLM.from_pretrained(name, revision=revision)
        except (OSError, ValueError) as err:
            raise XstiltsError(f"cannot load the masked-LM head of '{name}' ({err})") from None
    else:
        full = AutoModelForMaskedLM.from_config(config)
    output = full.get_output_embeddings()
    children = [
        (child_name, child)
        for child_name, child in full.named_children()
        if child_name != full.base_model_prefix and any(True for _ in child.parameters())
    ]
    if len(children) != 1:
        names = ", ".join(child_name for child_name, _ in children) or "none"
        raise XstiltsError(
            f"model '{name or config.model_type}': expected one masked-LM head module beside "
            f"the base model, found {names}"
        )
    child_name, child = children[0]
    output_path = next(
        (f"{child_name}.{path}" for path, module in child.named_modules() if module is output),
        None,
    )
    head = MaskedLMHead(child_name, child, output_path)
    if getattr(config, "tie_word_embeddings", True) and output is not None:
        embeddings = encoder.get_input_embeddings().weight
        if output.weight.shape != embeddings.shape:
            raise XstiltsError(
                f"model '{name or config.model_type}': the masked-LM output layer "
                f"{tuple(output.weight.shape)} does not match the input embeddings "
                f"{tuple(embeddings.shape)}"
            )
        output.weight = embeddings
    return head
