"""Dual-encoder retrieval, trained with in-batch negatives (XTREME-R's LAReQA, Mewsli-X).

Queries and candidates go through the same shared encoder, one sequence each, and
are pooled into L2-normalised vectors; relevance is their cosine similarity.

Rows (one schema for training and evaluation; ``check_row`` validates it):

``side``
    ``pair`` (a query and its positive candidate: training data), ``query`` or
    ``candidate`` (evaluation: the queries and the pool they search). Inferred as
    ``pair`` when unset and ``candidate_text`` is given.
``id``
    The query's id (``pair``, ``query``) or the candidate's id (``candidate``).
``text``, ``context``
    The row's own sequence: a query, or a candidate. A non-empty ``context`` is
    encoded as the second segment of a text pair: a LAReQA candidate is its sentence
    and then its paragraph, as XTREME-R encodes answers for training (its evaluation
    script glues the two into one sequence instead; here both phases use the pair).
``candidate_text``, ``candidate_context``
    ``pair`` only: the positive candidate's sequence.
``relevant``
    ``query``: ids of the relevant candidates (empty: unlabelled). ``pair``: the
    positive candidate's id (at most one); the candidate text itself when absent.
    Candidates with the same id are the same candidate.

Training (XTREME-R's ``BertForRetrieval`` in ``third_party/bert.py``): for a batch
of pairs, logits are ``scale * cos(query_i, candidate_j)`` and the loss is softmax
cross-entropy of each query over the batch's candidates, its own being the target.
``scale`` is ``1 / temperature`` (XTREME-R: 100, a trainable parameter); with
``learn_temperature`` it is trained. Other pairs of the batch whose positive has the
same id as the query's are masked out rather than counted as negatives. Negatives
come from the batch of one process (as XTREME-R's per-GPU loss).

Pooling (option ``pooling``): ``pooler`` (default) is XTREME-R's baseline, the
first token's final state through a dense layer and tanh (BERT's pooled output). The
encoder here is built without its pretrained pooler, so that layer is part of this
format's head and starts from a fresh initialisation. ``first`` takes the first token's
state as it is; ``mean`` averages the states under the attention mask.

Evaluation: every query and every candidate of a split is embedded (the candidate
pool once per run when every language brings the same one, as LAReQA's 11-language
pool and Mewsli-X's entity set: ``shared_features``, cached by the evaluator); each query's
``top_k`` (20) nearest candidates by inner product (``retrieval.search``) are its
prediction; the split is scored with the task's metric (mAP@20) against ``relevant``.
A split of pairs is evaluated the same way, its pool being the pairs' candidates
(one per id). Relevant ids missing from the pool (a subsampled split) are ignored, and
queries left without any are not scored. The prediction file is the Mewsli-X
submission layout, JSON ``{query id: [candidate ids, best first]}``, for every task of
this format (LAReQA's is keyed by question id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.formats.base import (
    Batch,
    FeatureOutputs,
    Outputs,
    TaskFormat,
    pad_nested,
    subsample_search,
)
from xstilts.metrics import get_metric
from xstilts.retrieval.search import nearest_neighbors
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

SIDES = ("pair", "query", "candidate")
POOLINGS = ("pooler", "first", "mean")
QUERY, CANDIDATE = 0, 1
"""Values of the ``role`` feature: which side of the search a feature embeds."""
NOT_A_PAIR = "rows that are not (query, positive candidate) pairs carry no training signal"


class DualEncoderHead(nn.Module):
    """Pools hidden states into unit vectors; holds the logit scale."""

    def __init__(
        self, hidden_size: int, pooling: str, scale: float, learn_scale: bool, init_std: float
    ) -> None:
        super().__init__()
        self.pooling = pooling
        if pooling == "pooler":
            self.dense = nn.Linear(hidden_size, hidden_size)
            nn.init.normal_(self.dense.weight, std=init_std)
            nn.init.zeros_(self.dense.bias)
        initial = torch.tensor([scale], dtype=torch.float32)
        if learn_scale:
            self.logit_scale = nn.Parameter(initial)
        else:
            self.register_buffer("logit_scale", initial, persistent=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).float()
            summed = (hidden_states.float() * weights).sum(dim=1)
            pooled = summed / weights.sum(dim=1).clamp(min=1.0)
        else:
            pooled = hidden_states[:, 0]
            if self.pooling == "pooler":
                pooled = torch.tanh(self.dense(pooled))
        return F.normalize(pooled.float(), dim=-1)


class DualEncoder(TaskFormat):
    name = "dual_encoder"
    version = "1"
    fields = FieldSpec(
        required=("text",),
        optional=("side", "context", "candidate_text", "candidate_context", "relevant"),
    )
    prediction_suffix = "json"
    tensor_keys = ("candidate_group",)
    default_options: Mapping[str, Any] = {
        "pooling": "pooler",
        "temperature": 0.01,
        "learn_temperature": True,
        "top_k": 20,
        "max_query_length": None,
        "max_candidate_length": None,
        "search_backend": "auto",
    }

    def options(self, spec: TaskSpec) -> dict[str, Any]:
        options = super().options(spec)
        where = f"task '{spec.name}': option"
        if options["pooling"] not in POOLINGS:
            raise XstiltsError(
                f"{where} pooling is {options['pooling']!r}; allowed: {', '.join(POOLINGS)}"
            )
        temperature = options["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise XstiltsError(f"{where} temperature must be a positive number")
        if not temperature > 0:
            raise XstiltsError(f"{where} temperature must be positive, got {temperature}")
        if not isinstance(options["learn_temperature"], bool):
            raise XstiltsError(f"{where} learn_temperature must be true or false")
        for key in ("top_k", "max_query_length", "max_candidate_length"):
            value = options[key]
            if value is None and key != "top_k":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise XstiltsError(f"{where} {key} must be a positive integer, got {value!r}")
        return options

    # -- examples -------------------------------------------------------------------
    def check_row(self, spec: TaskSpec) -> RowCheck:
        self.options(spec)  # bad options are reported before any data is read

        def check(row: dict[str, object]) -> dict[str, object]:
            for field in ("text", "context", "candidate_text", "candidate_context"):
                value = row.get(field)
                if value is None and field != "text":
                    value = ""
                if not isinstance(value, str):
                    raise ValueError(f"field '{field}' must be text, got {value!r}")
                row[field] = value
            side = row.get("side") or ("pair" if row["candidate_text"] else None)
            if side not in SIDES:
                raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")
            row["side"] = side
            relevant = _id_list(row.get("relevant"))
            if side == "pair":
                if not row["candidate_text"]:
                    raise ValueError("a pair needs its positive candidate in 'candidate_text'")
                if len(relevant) > 1:
                    raise ValueError(
                        f"a pair has one positive candidate; 'relevant' names {len(relevant)}"
                    )
                relevant = relevant or [row["candidate_text"]]
            else:
                for field in ("candidate_text", "candidate_context"):
                    if row[field]:
                        raise ValueError(f"field '{field}' belongs to pairs, not to {side} rows")
                if side == "candidate":
                    if relevant:
                        raise ValueError("a candidate has no relevant candidates of its own")
                    if row.get("id") in (None, ""):
                        raise ValueError("a candidate needs an 'id' (queries name it as relevant)")
            row["relevant"] = relevant
            return row

        return check

    def prepare_training_examples(
        self, spec: TaskSpec, examples: datasets.Dataset
    ) -> tuple[datasets.Dataset, dict[str, int]]:
        """Keep the pairs: query and candidate rows have nothing to contrast."""
        kept = examples.filter(
            lambda sides: [side == "pair" for side in sides],
            input_columns="side",
            batched=True,
            desc=f"keeping the pairs of {spec.name}",
        )
        skipped = len(examples) - len(kept)
        return kept, ({NOT_A_PAIR: skipped} if skipped else {})

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
        """Training: one feature per pair, holding the query's and the candidate's tokens.

        Otherwise one feature per sequence to embed, with its ``role`` (query or
        candidate) and ``example_index``: a pair gives two, other rows one.
        """
        options = self.options(spec)
        query_length = min(options["max_query_length"] or max_length, max_length)
        candidate_length = min(options["max_candidate_length"] or max_length, max_length)
        sides = batch["side"]
        own = [
            (batch["text"][i], batch["context"][i], CANDIDATE if side == "candidate" else QUERY)
            for i, side in enumerate(sides)
        ]
        pairs = [i for i, side in enumerate(sides) if side == "pair"]
        positives = [(batch["candidate_text"][i], batch["candidate_context"][i]) for i in pairs]
        limits = {QUERY: query_length, CANDIDATE: candidate_length}
        if training:
            queries = _tokenize(tokenizer, [own[i][:2] for i in pairs], query_length)
            candidates = _tokenize(tokenizer, positives, candidate_length)
            features = {**queries, **{f"candidate_{k}": v for k, v in candidates.items()}}
            features["candidate_group"] = [_group(batch["relevant"][i][0]) for i in pairs]
            return features
        sequences: list[tuple[str, str]] = []
        roles: list[int] = []
        examples: list[int] = []
        for i, (text, context, role) in enumerate(own):
            sequences.append((text, context))
            roles.append(role)
            examples.append(indices[i])
        for i, positive in zip(pairs, positives, strict=True):
            sequences.append(positive)
            roles.append(CANDIDATE)
            examples.append(indices[i])
        tokens: dict[str, list[Any]] = {}
        for role in (QUERY, CANDIDATE):
            chosen = [n for n, r in enumerate(roles) if r == role]
            encoded = _tokenize(tokenizer, [sequences[n] for n in chosen], limits[role])
            for key, values in encoded.items():
                column = tokens.setdefault(key, [None] * len(sequences))
                for n, value in zip(chosen, values, strict=True):
                    column[n] = value
        return {**tokens, "role": roles, "example_index": examples}

    def collate(self, batch: dict[str, list[Any]], pad_token_id: int) -> Batch:
        """The query side as the base format pads it; candidate tokens (pairs) separately."""
        own = {k: v for k, v in batch.items() if not k.startswith("candidate_")}
        if "candidate_group" in batch:
            own["candidate_group"] = batch["candidate_group"]
        tensors = super().collate(own, pad_token_id)
        if "candidate_input_ids" in batch:
            ids = batch["candidate_input_ids"]
            tensors["candidate_input_ids"] = pad_nested(ids, pad_token_id)
            tensors["candidate_attention_mask"] = pad_nested([[1] * len(s) for s in ids], 0)
            if "candidate_token_type_ids" in batch:
                types = batch["candidate_token_type_ids"]
                tensors["candidate_token_type_ids"] = pad_nested(types, 0)
        return tensors

    # -- model ------------------------------------------------------------------------
    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        options = self.options(spec)
        return DualEncoderHead(
            encoder.config.hidden_size,
            options["pooling"],
            1.0 / float(options["temperature"]),
            bool(options["learn_temperature"]),
            float(getattr(encoder.config, "initializer_range", 0.02)),
        )

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        """Evaluation features: ``embedding``. Training pairs: both sides and the logits."""
        embedding = _embed(encoder, head, batch, "")
        if "candidate_input_ids" not in batch:
            return {"embedding": embedding}
        candidate = _embed(encoder, head, batch, "candidate_")
        # Scaled cosines in float32 even under mixed precision: the scale is about 100.
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            logits = head.logit_scale.float() * (embedding @ candidate.T)
        return {"query": embedding, "candidate": candidate, "logits": logits}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        """Softmax cross-entropy of each query over the batch's candidates."""
        logits = outputs["logits"].float()
        targets = torch.arange(logits.shape[0], device=logits.device)
        if "candidate_group" in batch:
            group = batch["candidate_group"]
            same = group.unsqueeze(1) == group.unsqueeze(0)
            same &= ~torch.eye(len(group), dtype=torch.bool, device=same.device)
            logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, targets)

    def subsample(self, examples: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
        """``size`` queries (or pairs) with the candidates relevant to them, and others."""
        is_query = [side != "candidate" for side in examples["side"]]
        return subsample_search(examples, size, seed, is_query, examples["relevant"])

    def shared_features(self, spec: TaskSpec, features: datasets.Dataset) -> np.ndarray | None:
        """The candidate features: LAReQA and Mewsli-X search one pool from every
        language, so the evaluator embeds it once (it checks that the tokens match)."""
        if "role" not in features.column_names:
            return None
        roles = np.asarray(features["role"])
        return np.flatnonzero(roles == CANDIDATE)

    # -- predictions ------------------------------------------------------------------
    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> dict[str, list[str]]:
        """``{query id: [candidate ids, best first]}``, ``top_k`` of them (fewer if the
        pool is smaller), queries in the order of the split."""
        options = self.options(spec)
        ids, sides, relevant = examples["id"], examples["side"], examples["relevant"]
        query_ids: list[str] = []
        query_rows: list[int] = []
        candidate_ids: list[str] = []
        candidate_rows: list[int] = []
        seen: set[str] = set()
        roles, owners = features["role"], features["example_index"]
        for feature, (role, example) in enumerate(zip(roles, owners, strict=True)):
            if role == QUERY:
                query_ids.append(ids[example])
                query_rows.append(feature)
                continue
            cid = ids[example] if sides[example] == "candidate" else relevant[example][0]
            if cid not in seen:
                seen.add(cid)
                candidate_ids.append(cid)
                candidate_rows.append(feature)
        if len(set(query_ids)) != len(query_ids):
            repeated = next(q for q in query_ids if query_ids.count(q) > 1)
            raise XstiltsError(f"task '{spec.name}': query id {repeated!r} occurs twice")
        if not query_ids or not candidate_ids:
            raise XstiltsError(
                f"task '{spec.name}': a split to search needs queries and candidates "
                f"(found {len(query_ids)} queries, {len(candidate_ids)} candidates)"
            )
        queries = np.stack([outputs[n]["embedding"] for n in query_rows]).astype(np.float32)
        pool = np.stack([outputs[n]["embedding"] for n in candidate_rows]).astype(np.float32)
        k = min(options["top_k"], len(candidate_ids))
        _, neighbours = nearest_neighbors(queries, pool, k, backend=options["search_backend"])
        return {
            qid: [candidate_ids[j] for j in row]
            for qid, row in zip(query_ids, neighbours.tolist(), strict=True)
        }

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        """Relevant candidate ids of each query (and pair), in split order; None if none."""
        gold = _relevance(examples)
        return list(gold.values()) if any(gold.values()) else None

    def score(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        predictions: Any,
        language: str = "en",
    ) -> dict[str, float] | None:
        pool = _pool_ids(examples)
        gold = {}
        for qid, relevant in _relevance(examples).items():
            present = [r for r in relevant if r in pool]
            if present:
                gold[qid] = present
        if not gold:
            return None
        ranked = [list(predictions.get(qid, [])) for qid in gold]
        metric = get_metric(spec.metric)
        extra = {"language": language} if getattr(metric, "needs_language", False) else {}
        return metric.score(ranked, [set(r) for r in gold.values()], **extra)

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Any
    ) -> str:
        return json.dumps(predictions, ensure_ascii=False, indent=1) + "\n"


# ---------------------------------------------------------------------------
# helpers


def _id_list(raw: object) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str | int):
        return [str(raw)]
    if isinstance(raw, list | tuple) and all(isinstance(r, str | int) for r in raw):
        return [str(r) for r in raw]
    raise ValueError(f"'relevant' must be a candidate id or a list of them, got {raw!r}")


def _group(candidate_id: str) -> int:
    """A stable 63-bit number naming a candidate, to find repeated positives in a batch."""
    digest = hashlib.blake2b(candidate_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, sequences: Sequence[tuple[str, str]], max_length: int
) -> dict[str, list[Any]]:
    """Token columns of (text, context) sequences; a context makes a text pair."""
    single = [n for n, (_, context) in enumerate(sequences) if not context]
    paired = [n for n, (_, context) in enumerate(sequences) if context]
    columns: dict[str, list[Any]] = {"input_ids": [None] * len(sequences)}
    for chosen in (single, paired):
        if not chosen:
            continue
        texts = [sequences[n][0] for n in chosen]
        pairs = [sequences[n][1] for n in chosen] if chosen is paired else None
        encoded = tokenizer(
            texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False
        )
        for key, values in encoded.items():
            column = columns.setdefault(key, [[] for _ in sequences])
            for n, value in zip(chosen, values, strict=True):
                column[n] = value
    return columns


def _embed(encoder: PreTrainedModel, head: nn.Module, batch: Batch, prefix: str) -> torch.Tensor:
    inputs = {
        key: batch[prefix + key]
        for key in ("input_ids", "attention_mask", "token_type_ids")
        if prefix + key in batch
    }
    hidden = encoder(**inputs).last_hidden_state
    return head(hidden, inputs["attention_mask"])


def _relevance(examples: datasets.Dataset) -> dict[str, list[str]]:
    """Query id -> relevant candidate ids, for the query and pair rows of a split."""
    return {
        qid: list(relevant)
        for qid, side, relevant in zip(
            examples["id"], examples["side"], examples["relevant"], strict=True
        )
        if side != "candidate"
    }


def _pool_ids(examples: datasets.Dataset) -> set[str]:
    """Ids of every candidate a split's queries are searched against."""
    return {
        cid if side == "candidate" else relevant[0]
        for cid, side, relevant in zip(
            examples["id"], examples["side"], examples["relevant"], strict=True
        )
        if side != "query"
    }
