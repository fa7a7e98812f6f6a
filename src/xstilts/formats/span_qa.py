"""Extractive question answering (SQuAD, XQuAD, MLQA, TyDiQA-GoldP).

Question + context windows (max length 384, stride 128 by default) with offset
mappings; answers are decoded by an n-best start/end search over every window
of a question and always cut from the original context by character offsets.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.formats.base import Batch, FeatureOutputs, Outputs, TaskFormat, encoder_inputs
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

MISMATCH = "answer_start does not match the answer text"
PADDING_LOGIT = -1e4
"""Logit given to padding positions when distributions over a window are compared."""


class SpanQA(TaskFormat):
    name = "span_qa"
    fields = FieldSpec(required=("context", "question"), optional=("answers",))
    prediction_suffix = "json"
    tensor_keys = ("start_positions", "end_positions")
    default_options: Mapping[str, Any] = {
        "doc_stride": 128,
        "n_best": 20,
        "max_answer_length": 30,
        "version_2": False,
        "null_score_threshold": 0.0,
        "max_question_length": 64,
    }

    # -- examples -------------------------------------------------------------------
    def check_row(self, spec: TaskSpec) -> RowCheck:
        def check(row: dict[str, object]) -> dict[str, object]:
            row["answers"] = _normalise_answers(row.get("answers"))
            for field in ("context", "question"):
                if not isinstance(row[field], str):
                    raise ValueError(f"field '{field}' must be text, got {row[field]!r}")
            return row

        return check

    def is_labelled(self, spec: TaskSpec, row: dict[str, object]) -> bool:
        """An answer; in SQuAD v2.0 no answer is a label too (unanswerable)."""
        return bool(row["answers"]) or self.options(spec)["version_2"]

    def prepare_training_examples(
        self, spec: TaskSpec, examples: datasets.Dataset
    ) -> tuple[datasets.Dataset, dict[str, int]]:
        """Skip (and count) examples whose first answer is not where answer_start says."""

        def consistent(row: dict[str, Any]) -> bool:
            if not row["answers"]:
                return True
            answer = row["answers"][0]
            start = answer["answer_start"]
            return row["context"][start : start + len(answer["text"])] == answer["text"]

        kept = examples.filter(consistent, desc=f"checking answers of {spec.name}")
        skipped = len(examples) - len(kept)
        return kept, ({MISMATCH: skipped} if skipped else {})

    # -- features -------------------------------------------------------------------
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
        options = self.options(spec)
        questions, longest = _capped_questions(
            batch["question"], tokenizer, options["max_question_length"]
        )
        room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
        if room <= options["doc_stride"]:
            raise XstiltsError(
                f"task '{spec.name}': max_length {max_length} leaves {room} context tokens "
                f"beside a question of {longest} tokens; it must exceed doc_stride "
                f"{options['doc_stride']} (lower doc_stride or max_question_length)"
            )
        encoded = tokenizer(
            questions,
            batch["context"],
            truncation="only_second",
            max_length=max_length,
            stride=options["doc_stride"],
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_attention_mask=False,
        )
        windows = encoded.pop("overflow_to_sample_mapping")
        all_offsets = encoded.pop("offset_mapping")
        starts, ends, context_starts, context_offsets = [], [], [], []
        for window, example in enumerate(windows):
            sequence_ids = encoded.sequence_ids(window)
            # The context is one contiguous run of tokens with sequence id 1.
            first = sequence_ids.index(1)
            last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
            offsets = all_offsets[window]
            start, end = _answer_tokens(batch["answers"][example], offsets, first, last)
            starts.append(start)
            ends.append(end)
            if training:  # answer decoding is never done on training features
                continue
            context_starts.append(first)
            # (start, end) character offsets of the context tokens, flattened
            context_offsets.append(
                np.fromiter(
                    chain.from_iterable(offsets[first : last + 1]),
                    dtype=np.int32,
                    count=2 * (last + 1 - first),
                )
            )
        features = dict(encoded)
        features.update(
            start_positions=starts,
            end_positions=ends,
            example_index=[indices[example] for example in windows],
        )
        if not training:
            features.update(context_start=context_starts, context_offsets=context_offsets)
        return features

    # -- model ------------------------------------------------------------------------
    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        return nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        hidden = encoder(**encoder_inputs(batch)).last_hidden_state
        start_logits, end_logits = head(hidden).unbind(dim=-1)
        return {"start_logits": start_logits, "end_logits": end_logits}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        start = F.cross_entropy(outputs["start_logits"].float(), batch["start_positions"])
        end = F.cross_entropy(outputs["end_logits"].float(), batch["end_positions"])
        return (start + end) / 2

    def distributions(self, outputs: Outputs, batch: Batch) -> list[torch.Tensor]:
        """The start and the end distributions over each window's tokens (not padding)."""
        padding = batch["attention_mask"] == 0
        return [
            outputs[key].float().masked_fill(padding, PADDING_LOGIT)
            for key in ("start_logits", "end_logits")
        ]

    # -- predictions ------------------------------------------------------------------
    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        options = self.options(spec)
        windows: dict[int, list[int]] = defaultdict(list)
        for feature, example in enumerate(features["example_index"]):
            windows[example].append(feature)
        context_starts = features["context_start"]
        context_offsets = features["context_offsets"]
        contexts = examples["context"]
        answers = []
        for example in range(len(examples)):
            best_score, best_span, null_score = -np.inf, None, np.inf
            for feature in windows.get(example, []):
                start_logits = outputs[feature]["start_logits"]
                end_logits = outputs[feature]["end_logits"]
                null_score = min(null_score, float(start_logits[0] + end_logits[0]))
                score, span = _best_span(
                    start_logits,
                    end_logits,
                    context_starts[feature],
                    context_offsets[feature],
                    options,
                )
                if span is not None and score > best_score:
                    best_score, best_span = score, span
            text = "" if best_span is None else _cut(contexts[example], *best_span)
            if options["version_2"] and null_score > best_score + options["null_score_threshold"]:
                text = ""
            answers.append(text)
        return answers

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        version_2 = self.options(spec)["version_2"]
        references = []
        for answers in examples["answers"]:
            texts = [a["text"] for a in answers]
            references.append(texts or ([""] if version_2 else None))
        return None if all(r is None for r in references) else references

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Sequence[Any]
    ) -> str:
        mapping = dict(zip(examples["id"], predictions, strict=True))
        return json.dumps(mapping, ensure_ascii=False, indent=1) + "\n"


def _capped_questions(
    questions: list[str], tokenizer: PreTrainedTokenizerBase, limit: int
) -> tuple[list[str], int]:
    """Questions cut after their first ``limit`` tokens (XTREME's max_query_length),
    and the token count of the longest one after the cut."""
    questions = [q.lstrip() for q in questions]
    # The Rust tokenizer directly: counting tokens needs no Python-side conversion. It
    # keeps the truncation of the last call; transformers sets it again on every call.
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    encodings = backend.encode_batch(questions, add_special_tokens=False)
    capped = [
        question if len(enc.offsets) <= limit else question[: enc.offsets[limit - 1][1]]
        for question, enc in zip(questions, encodings, strict=True)
    ]
    longest = max((min(len(enc.offsets), limit) for enc in encodings), default=0)
    return capped, longest


def _normalise_answers(raw: object) -> list[dict[str, Any]]:
    """Answers as a list of {text, answer_start}, from either layout in use.

    SQuAD files hold a list of records; hub datasets a record of lists.
    """
    if raw is None:
        return []
    if isinstance(raw, dict):
        texts, starts = raw.get("text", []), raw.get("answer_start", [])
        if len(texts) != len(starts):
            raise ValueError("answers: 'text' and 'answer_start' differ in length")
        raw = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if not isinstance(raw, list):
        raise ValueError(f"answers must be a list of {{text, answer_start}}, got {raw!r}")
    answers = []
    for answer in raw:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ValueError(f"each answer needs a 'text', got {answer!r}")
        start = answer.get("answer_start", -1)
        if not isinstance(start, int):
            raise ValueError(f"answer_start must be an integer, got {start!r}")
        if answer["text"]:  # XTREME's unlabelled files hold {"text": "", "answer_start": 0}
            answers.append({"text": answer["text"], "answer_start": start})
    return answers


def _answer_tokens(
    answers: list[dict[str, Any]], offsets: list[tuple[int, int]], first: int, last: int
) -> tuple[int, int]:
    """Token span of the first answer in this window, or (0, 0): the CLS position."""
    if not answers or answers[0]["answer_start"] < 0:
        return 0, 0
    start_char = answers[0]["answer_start"]
    end_char = start_char + len(answers[0]["text"])
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    # Tokens with equal offsets (a bare "▁" before a character) can put the end scan
    # before the start; the answer still lies in the start token.
    return start - 1, max(end + 1, start - 1)


def _best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_start: int,
    context_offsets: list[int],
    options: Mapping[str, Any],
) -> tuple[float, tuple[int, int] | None]:
    """The best (start char, end char) span of one window by start + end logit.

    Only context tokens can start or end an answer: token ``context_start + i`` has
    the character offsets ``context_offsets[2 * i]`` to ``context_offsets[2 * i + 1]``.
    """
    context_end = context_start + len(context_offsets) // 2
    n_best = options["n_best"]
    top_starts = np.argsort(start_logits[:context_end])[::-1][:n_best]
    top_ends = np.argsort(end_logits[:context_end])[::-1][:n_best]
    best_score, best = -np.inf, None
    for s in top_starts:
        if s < context_start:
            continue
        for e in top_ends:
            if e < s or e - s + 1 > options["max_answer_length"]:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best_score:
                best_score = score
                best = (
                    context_offsets[2 * (s - context_start)],
                    context_offsets[2 * (e - context_start) + 1],
                )
    return best_score, best


def _cut(context: str, start: int, end: int) -> str:
    """The answer text from the context; offsets of SentencePiece tokens may include the
    space before a word, which is not part of the answer."""
    while start < end and context[start].isspace():
        start += 1
    return context[start:end]
