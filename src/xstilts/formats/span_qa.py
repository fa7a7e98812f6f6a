"""Extractive question answering (SQuAD, XQuAD, MLQA, TyDiQA-GoldP).

Question + context windows (max length 384, doc_stride 128 by default) with offset
mappings; answers are decoded by an n-best start/end search over every window
of a question and always cut from the original context by character offsets.

Each window holds the question (cut after ``max_question_length`` tokens), the
special tokens and up to ``room = max_length - question tokens - special tokens``
context tokens; the last window reaches the end of the context. ``doc_stride``
means one of two things (option ``doc_stride_meaning``):

- ``step`` (the default): the distance between the starts of consecutive windows,
  as in jiant (the paper's code) and XTREME's SQuAD processor; two windows share
  ``room - doc_stride`` tokens, so the overlap depends on the question's length.
  Where ``doc_stride >= room`` the windows do not overlap.
- ``overlap``: the number of tokens consecutive windows share, the ``stride`` of
  Hugging Face tokenizers and of the run_qa.py example; ``room`` must exceed it.

Windows are built from one tokenisation of each question and of each distinct
context (a SQuAD paragraph is shared by several questions), the tokens the
tokenizer's own overflow would give, without its per-window Python objects.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.formats.base import Batch, FeatureOutputs, Outputs, TaskFormat, encoder_inputs
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

DOC_STRIDE_MEANINGS = ("step", "overlap")
MISMATCH = "answer_start does not match the answer text"
PADDING_LOGIT = -1e4
"""Logit given to padding positions when distributions over a window are compared."""


class SpanQA(TaskFormat):
    name = "span_qa"
    version = "3"  # doc_stride became the step between windows (was the overlap)
    fields = FieldSpec(required=("context", "question"), optional=("answers",))
    prediction_suffix = "json"
    tensor_keys = ("start_positions", "end_positions")
    default_options: Mapping[str, Any] = {
        "doc_stride": 128,
        "doc_stride_meaning": "step",
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
        """The windows of each question (see the module docstring), in example order."""
        options = self.options(spec)
        step_of = _window_step(spec.name, options, max_length)
        backend = _untruncated(tokenizer, spec.name)
        template = _PairTemplate.of(backend)
        questions = _question_ids(backend, batch["question"], options["max_question_length"])
        contexts = _contexts(backend, batch["context"])
        with_types = "token_type_ids" in tokenizer.model_input_names
        keys = ["input_ids", "start_positions", "end_positions", "example_index"]
        keys += ["token_type_ids"] if with_types else []
        keys += [] if training else ["context_start", "context_offsets"]
        features: dict[str, list[Any]] = {key: [] for key in keys}
        for example, question in enumerate(questions):
            ids, offsets, array = contexts[example]
            room = max_length - len(question) - template.n_specials
            prefix = template.before + question + template.between
            answer = _answer_chars_and_tokens(batch["answers"][example], offsets)
            context_start = len(prefix)
            for first, stop in _windows(len(ids), room, step_of(room, len(question))):
                features["input_ids"].append(prefix + ids[first:stop] + template.after)
                start, end = _answer_positions(answer, offsets, first, stop, context_start)
                features["start_positions"].append(start)
                features["end_positions"].append(end)
                features["example_index"].append(indices[example])
                if with_types:
                    features["token_type_ids"].append(template.type_ids(question, stop - first))
                if not training:
                    features["context_start"].append(context_start)
                    # (start, end) character offsets of the context tokens, flattened
                    features["context_offsets"].append(array[first:stop].ravel())
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


def _window_step(
    task: str, options: Mapping[str, Any], max_length: int
) -> Callable[[int, int], int]:
    """How far each window's start moves past the previous one's, given the room left
    for context tokens beside a question (and the question's length, for errors)."""
    stride, meaning = options["doc_stride"], options["doc_stride_meaning"]
    if meaning not in DOC_STRIDE_MEANINGS:
        raise XstiltsError(
            f"task '{task}': option doc_stride_meaning must be one of "
            f"{', '.join(DOC_STRIDE_MEANINGS)}, got {meaning!r}"
        )
    least = 1 if meaning == "step" else 0
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < least:
        raise XstiltsError(
            f"task '{task}': option doc_stride must be an integer >= {least} "
            f"(doc_stride_meaning {meaning}), got {stride!r}"
        )

    def step(room: int, question_length: int) -> int:
        if room < 1:
            raise XstiltsError(
                f"task '{task}': max_length {max_length} leaves no context tokens beside "
                f"a question of {question_length} tokens (raise max_length or lower "
                "max_question_length)"
            )
        return min(stride, room)

    def overlap(room: int, question_length: int) -> int:
        if room <= stride:
            raise XstiltsError(
                f"task '{task}': max_length {max_length} leaves {room} context tokens "
                f"beside a question of {question_length} tokens; it must exceed doc_stride "
                f"{stride} (doc_stride_meaning overlap; lower doc_stride or "
                "max_question_length)"
            )
        return room - stride

    return step if meaning == "step" else overlap


def _windows(length: int, room: int, step: int) -> list[tuple[int, int]]:
    """(first, stop) context tokens of each window: windows of ``room`` tokens whose
    starts are ``step`` apart, the last one reaching the end of the context."""
    if length <= room:
        return [(0, length)]
    count = 1 + -(-(length - room) // step)
    return [(k * step, min(k * step + room, length)) for k in range(count)]


def _untruncated(tokenizer: PreTrainedTokenizerBase, task: str) -> Tokenizer:
    """The Rust tokenizer, set to neither truncate nor pad. It keeps the settings of
    the last call; transformers sets them again on every call."""
    if not tokenizer.is_fast:
        raise XstiltsError(
            f"task '{task}': span_qa needs a fast tokenizer (offset mappings), "
            f"got {type(tokenizer).__name__}"
        )
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    return backend


class _PairTemplate(NamedTuple):
    """The special tokens the tokenizer puts around a (question, context) pair."""

    before: list[int]
    between: list[int]
    after: list[int]
    types: tuple[list[int], int, list[int], int, list[int]]

    @property
    def n_specials(self) -> int:
        return len(self.before) + len(self.between) + len(self.after)

    @classmethod
    def of(cls, backend: Tokenizer) -> _PairTemplate:
        pair = backend.encode("a", "b", add_special_tokens=True)
        sequences = pair.sequence_ids
        question = [i for i, s in enumerate(sequences) if s == 0]
        context = [i for i, s in enumerate(sequences) if s == 1]
        parts = (
            slice(0, question[0]),
            slice(question[-1] + 1, context[0]),
            slice(context[-1] + 1, len(sequences)),
        )
        ids, types = pair.ids, pair.type_ids
        before, between, after = (ids[part] for part in parts)
        type_parts = [types[part] for part in parts]
        return cls(
            before,
            between,
            after,
            (type_parts[0], types[question[0]], type_parts[1], types[context[0]], type_parts[2]),
        )

    def type_ids(self, question: list[int], context_length: int) -> list[int]:
        before, question_type, between, context_type, after = self.types
        return (
            before
            + [question_type] * len(question)
            + between
            + [context_type] * context_length
            + after
        )


def _question_ids(backend: Tokenizer, questions: list[str], limit: int) -> list[list[int]]:
    """Token ids of each question (leading whitespace dropped), cut after ``limit``
    tokens (XTREME's max_query_length truncates the ids the same way)."""
    encodings = backend.encode_batch([q.lstrip() for q in questions], add_special_tokens=False)
    return [encoding.ids[:limit] for encoding in encodings]


_Context = tuple[list[int], list[tuple[int, int]], np.ndarray]
"""Token ids, (start, end) character offsets, and those offsets as an (n, 2) array."""


def _contexts(backend: Tokenizer, texts: list[str]) -> list[_Context]:
    """Each example's context tokens; a context shared by several questions (as in
    SQuAD files) is tokenised once."""
    slots: dict[str, int] = {}
    slot_of = [slots.setdefault(text, len(slots)) for text in texts]
    tokenised = []
    for encoding in backend.encode_batch(list(slots), add_special_tokens=False):
        offsets = encoding.offsets
        array = np.array(offsets, dtype=np.int32).reshape(-1, 2)
        tokenised.append((encoding.ids, offsets, array))
    return [tokenised[slot] for slot in slot_of]


_Answer = tuple[int, int, int, int]
"""Start and end character of an answer, the last context token starting at or before
its start, and the first one ending at or after its end."""


def _answer_chars_and_tokens(
    answers: list[dict[str, Any]], offsets: list[tuple[int, int]]
) -> _Answer | None:
    """The first answer, located in the context tokens (found once, not per window)."""
    if not answers or answers[0]["answer_start"] < 0 or not offsets:
        return None
    start_char = answers[0]["answer_start"]
    end_char = start_char + len(answers[0]["text"])
    last_start = bisect_right(offsets, start_char, key=itemgetter(0)) - 1
    first_end = bisect_left(offsets, end_char, key=itemgetter(1))
    return start_char, end_char, last_start, first_end


def _answer_positions(
    answer: _Answer | None,
    offsets: list[tuple[int, int]],
    first: int,
    stop: int,
    context_start: int,
) -> tuple[int, int]:
    """Start and end positions of the answer in the window that holds the context tokens
    ``first`` to ``stop`` from position ``context_start`` on, or (0, 0), the CLS
    position, where the window does not hold all of it.

    As Hugging Face's run_qa scans each window: the last token starting at or before the
    answer, the first one ending at or after it (offsets never decrease along a context).
    """
    if answer is None:
        return 0, 0
    start_char, end_char, last_start, first_end = answer
    if offsets[first][0] > start_char or offsets[stop - 1][1] < end_char:
        return 0, 0
    start = min(last_start, stop - 1)
    # Tokens with equal offsets (a bare "▁" before a character) can put the end before
    # the start; the answer still lies in the start token.
    end = max(first_end, first, start)
    return start - first + context_start, end - first + context_start


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
