"""Token tagging (PAN-X NER, UD POS, CCG supertags).

The first subword of each word carries the word's label; the others are
ignored by the loss. A sentence longer than the maximum length is cut, at word
boundaries, into consecutive windows that are predicted separately and joined
again, so every input word gets exactly one predicted tag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.formats.base import (
    UNLABELLED,
    Batch,
    FeatureOutputs,
    Outputs,
    TaskFormat,
    encoder_inputs,
    hidden_dropout,
    label_index,
)
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

IGNORED = -100


class Tagging(TaskFormat):
    name = "tagging"
    fields = FieldSpec(required=("tokens",), optional=("tags",))
    prediction_suffix = "tsv"
    tensor_keys = ("labels",)

    def check_row(self, spec: TaskSpec) -> RowCheck:
        def check(row: dict[str, object]) -> dict[str, object]:
            tokens, tags = row["tokens"], row.get("tags")
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError(f"field 'tokens' must be a list of words, got {tokens!r}")
            if not tokens:
                raise ValueError("a sentence without words")
            if tags is None:
                row["tags"] = []
                return row
            if not isinstance(tags, list) or len(tags) != len(tokens):
                raise ValueError(f"{len(tokens)} words but tags {tags!r}")
            row["tags"] = [label_index(tag, spec.labels) for tag in tags]
            if UNLABELLED in row["tags"]:
                raise ValueError("a labelled sentence has a word without a tag")
            return row

        return check

    def is_labelled(self, spec: TaskSpec, row: dict[str, object]) -> bool:
        return bool(row["tags"])

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
        encoded = tokenizer(
            batch["tokens"],
            is_split_into_words=True,
            add_special_tokens=False,
            return_attention_mask=False,
        )
        prefix, budget = _special_layout(tokenizer, max_length)
        features: dict[str, list[Any]] = defaultdict(list)
        for row, (words, tags) in enumerate(zip(batch["tokens"], batch["tags"], strict=True)):
            pieces = _pieces_per_word(encoded["input_ids"][row], encoded.word_ids(row), len(words))
            for first_word, window in _windows(pieces, budget, tokenizer.unk_token_id):
                ids, positions, labels = [], [], []
                for offset, word_pieces in enumerate(window):
                    positions.append(prefix + len(ids))
                    tag = tags[first_word + offset] if tags else IGNORED
                    labels.extend([tag] + [IGNORED] * (len(word_pieces) - 1))
                    ids.extend(word_pieces)
                input_ids = tokenizer.build_inputs_with_special_tokens(ids)
                suffix = len(input_ids) - prefix - len(ids)
                features["input_ids"].append(input_ids)
                features["labels"].append([IGNORED] * prefix + labels + [IGNORED] * suffix)
                features["word_positions"].append(positions)
                features["first_word"].append(first_word)
                features["example_index"].append(indices[row])
        return dict(features)

    def collate(self, batch: dict[str, list[Any]], pad_token_id: int) -> Batch:
        tensors = super().collate({k: v for k, v in batch.items() if k != "labels"}, pad_token_id)
        if "labels" in batch:
            width = tensors["input_ids"].shape[1]
            tensors["labels"] = torch.tensor(
                [labels + [IGNORED] * (width - len(labels)) for labels in batch["labels"]]
            )
        return tensors

    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        return nn.Sequential(
            nn.Dropout(hidden_dropout(encoder)),
            nn.Linear(encoder.config.hidden_size, len(spec.labels)),
        )

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        hidden = encoder(**encoder_inputs(batch)).last_hidden_state
        return {"logits": head(hidden)}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        logits = outputs["logits"].float()
        return F.cross_entropy(
            logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=IGNORED
        )

    def distributions(self, outputs: Outputs, batch: Batch) -> list[torch.Tensor]:
        """One distribution over tags per labelled word."""
        logits = outputs["logits"]
        return [logits[batch["labels"] != IGNORED]]

    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for feature, (example, first_word) in enumerate(
            zip(features["example_index"], features["first_word"], strict=True)
        ):
            windows[example].append((first_word, feature))
        positions = features["word_positions"]
        predictions = []
        for example, tokens in enumerate(examples["tokens"]):
            tags: list[str] = []
            for first_word, feature in sorted(windows[example]):
                assert first_word == len(tags), "windows must tile the sentence"
                logits = outputs[feature]["logits"][positions[feature]]
                tags.extend(spec.labels[i] for i in np.argmax(logits, axis=-1))
            assert len(tags) == len(tokens), "every word gets exactly one tag"
            predictions.append(tags)
        return predictions

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        references = [[spec.labels[t] for t in tags] if tags else None for tags in examples["tags"]]
        return None if all(r is None for r in references) else references

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Sequence[Any]
    ) -> str:
        # One tag per line, a blank line after each sentence: lines up with the input words.
        return "".join("".join(f"{tag}\n" for tag in tags) + "\n" for tags in predictions)


def _special_layout(tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[int, int]:
    """Where the first word piece lands after the special tokens, and the piece budget."""
    marker = -7
    built = tokenizer.build_inputs_with_special_tokens([marker])
    budget = max_length - (len(built) - 1)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for words")
    return built.index(marker), budget


def _pieces_per_word(
    input_ids: list[int], word_ids: list[int | None], num_words: int
) -> list[list[int]]:
    pieces: list[list[int]] = [[] for _ in range(num_words)]
    for token, word in zip(input_ids, word_ids, strict=True):
        if word is not None:
            pieces[word].append(token)
    return pieces


def _windows(
    pieces: list[list[int]], budget: int, unk_token_id: int
) -> list[tuple[int, list[list[int]]]]:
    """Consecutive runs of words whose pieces fit the budget: (index of first word, pieces).

    A word that the tokenizer drops entirely (some control characters) becomes the
    unknown token, and a single word longer than the budget keeps its first pieces, so
    each word still has a first piece to be tagged at.
    """
    windows: list[tuple[int, list[list[int]]]] = []
    current: list[list[int]] = []
    used = 0
    start = 0
    for index, word in enumerate(pieces):
        word = (word or [unk_token_id])[:budget]
        if current and used + len(word) > budget:
            windows.append((start, current))
            current, used, start = [], 0, index
        current.append(word)
        used += len(word)
    if current:
        windows.append((start, current))
    return windows
