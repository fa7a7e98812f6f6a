"""Zero-shot sentence retrieval from the encoder (Tatoeba, BUCC 2018).

Sentences are embedded from one hidden layer (option ``layer``; default 14 of
24, counting the embedding output as 0, scaled to the depth of other encoders),
pooled (option ``pooling``), L2-normalised, and matched by cosine similarity.
Examples are sentences with a side (source or target), an id and, for sources,
the id of their gold target. The predictions of a split are one object.

Pooling and layer, as the paper (jiant X-STILTs) and as XTREME's scripts:

- ``pooling: mean`` (default): the mean of the layer's states under the attention
  mask, special tokens included. jiant's X-STILTs configs use ``{"pooler_type":
  "mean", "layer": 14}`` (its ``hidden_states[14]``, the embedding output being 0)
  for BUCC and Tatoeba alike; XTREME's Tatoeba script for XLM-R is the same (mean
  pooling, ``--specific_layer 13`` of the last 24 states, i.e. state 14).
- ``pooling: first``: the state of the first token (``<s>``/``[CLS]``). XTREME's
  ``run_bucc2018.sh`` passes ``--pool_type cls --specific_layer 7`` and no
  ``--num_layers`` (default 12) to ``evaluate_retrieval.py``, which keeps the last
  12 hidden states and takes the 8th: for XLM-R Large (25 states) that is state
  20, for mBERT state 8. So XTREME's BUCC is ``pooling: first, layer: 20`` for
  XLM-R Large. (The older ``run_retrieval.py`` ignored ``--pool_type`` for BUCC
  and mean-pooled that same state 20.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.errors import XstiltsError
from xstilts.formats.base import (
    Batch,
    FeatureOutputs,
    Outputs,
    TaskFormat,
    encoder_inputs,
    subsample_search,
)
from xstilts.metrics.retrieval import bucc_f1, tatoeba_accuracy
from xstilts.retrieval.bucc import (
    apply_threshold,
    best_threshold,
    mine_candidates,
    unify_sentences,
)
from xstilts.retrieval.search import nearest_neighbors
from xstilts.tasks.loading import FieldSpec, RowCheck
from xstilts.tasks.spec import TaskSpec

SIDES = ("source", "target")
REFERENCE_LAYER, REFERENCE_DEPTH = 14, 24  # XLM-R Large, as jiant X-STILTs


POOLINGS = ("mean", "first")


class PoolLayer(nn.Module):
    """No parameters: which hidden layer to pool, and how (``mean`` or ``first``)."""

    def __init__(self, layer: int, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.layer = layer
        self.pooling = pooling

    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        states = hidden_states[self.layer].float()
        if self.pooling == "first":
            pooled = states[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


class Retrieval(TaskFormat):
    name = "retrieval"
    fields = FieldSpec(required=("side", "text"), optional=("gold",))
    prediction_suffix = "tsv"
    trainable = False
    tensor_keys = ()
    default_options: Mapping[str, Any] = {
        "mode": "tatoeba",  # or "bucc"
        "layer": None,
        "pooling": "mean",  # or "first" (XTREME's BUCC script)
        "k": 4,
        "search_backend": "auto",
    }

    def options(self, spec: TaskSpec) -> dict[str, Any]:
        options = super().options(spec)
        if options["pooling"] not in POOLINGS:
            raise XstiltsError(
                f"task '{spec.name}': option pooling is {options['pooling']!r}; "
                f"allowed: {', '.join(POOLINGS)}"
            )
        layer = options["layer"]
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)):
            raise XstiltsError(
                f"task '{spec.name}': option layer must be a hidden-state index "
                f"(0 = embedding output) or null, got {layer!r}"
            )
        return options

    def needs_calibration(self, spec: TaskSpec) -> bool:
        return self.options(spec)["mode"] == "bucc"

    def check_row(self, spec: TaskSpec) -> RowCheck:
        self.options(spec)  # bad options are reported before any data is read

        def check(row: dict[str, object]) -> dict[str, object]:
            if row["side"] not in SIDES:
                raise ValueError(f"side must be 'source' or 'target', got {row['side']!r}")
            if not isinstance(row["text"], str):
                raise ValueError(f"field 'text' must be text, got {row['text']!r}")
            row["gold"] = str(row.get("gold") or "")
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
        encoded = tokenizer(
            batch["text"], truncation=True, max_length=max_length, return_attention_mask=False
        )
        features = dict(encoded)
        features["example_index"] = indices
        return features

    def build_head(self, spec: TaskSpec, encoder: PreTrainedModel) -> nn.Module:
        depth = encoder.config.num_hidden_layers
        options = self.options(spec)
        layer = options["layer"]
        if layer is None:
            layer = round(REFERENCE_LAYER * depth / REFERENCE_DEPTH)
        if not 0 <= layer <= depth:
            raise ValueError(f"task '{spec.name}': layer {layer} outside 0..{depth}")
        return PoolLayer(layer, options["pooling"])

    def subsample(self, examples: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
        """``size`` source sentences with their gold targets (and others, to ``size``)."""
        is_source = [side == "source" for side in examples["side"]]
        relevant = [[gold] if gold else [] for gold in examples["gold"]]
        return subsample_search(examples, size, seed, is_source, relevant)

    def forward(self, encoder: PreTrainedModel, head: nn.Module, batch: Batch) -> Outputs:
        inputs = encoder_inputs(batch)
        hidden = encoder(**inputs, output_hidden_states=True).hidden_states
        return {"embedding": head(hidden, inputs["attention_mask"])}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        raise NotImplementedError("zero-shot retrieval is not trained")

    # -- predictions ----------------------------------------------------------------
    def predict(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
        calibration: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        options = self.options(spec)
        split = _Split.of(examples, outputs)
        backend = options["search_backend"]
        if options["mode"] == "tatoeba":
            _, forward = nearest_neighbors(split.source, split.target, 1, backend=backend)
            _, backward = nearest_neighbors(split.target, split.source, 1, backend=backend)
            return {"forward": forward[:, 0].tolist(), "backward": backward[:, 0].tolist()}
        candidates = self._candidates(split, options)
        if calibration is None:
            raise ValueError("BUCC predictions need the threshold chosen on the dev split")
        pairs = apply_threshold(candidates, calibration["threshold"])
        return {"pairs": sorted(pairs)}

    def calibrate(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        outputs: FeatureOutputs,
    ) -> dict[str, Any]:
        """BUCC: the margin threshold with the best F1 on the dev split."""
        split = _Split.of(examples, outputs)
        gold = split.gold_pairs()
        if not gold:
            raise ValueError(f"task '{spec.name}': the dev split has no gold pairs to calibrate on")
        threshold, f1 = best_threshold(self._candidates(split, self.options(spec)), gold)
        return {"threshold": float(threshold), "dev_f1": float(f1)}

    def _candidates(self, split: _Split, options: Mapping[str, Any]) -> list:
        # As XTREME: identical sentences are mined once, and a sentence that occurs
        # under several ids is never reported (its id is ambiguous).
        source_rows, source_ids = unify_sentences(split.source_texts, split.source_ids)
        target_rows, target_ids = unify_sentences(split.target_texts, split.target_ids)
        return mine_candidates(
            split.source[source_rows],
            split.target[target_rows],
            source_ids,
            target_ids,
            k=options["k"],
            backend=options["search_backend"],
        )

    def references(self, spec: TaskSpec, examples: datasets.Dataset) -> list[Any] | None:
        gold = [
            g
            for g, side in zip(examples["gold"], examples["side"], strict=True)
            if side == "source"
        ]
        return gold if any(gold) else None

    def score(
        self,
        spec: TaskSpec,
        examples: datasets.Dataset,
        predictions: Any,
        language: str = "en",
    ) -> dict[str, float] | None:
        split = _Split.of(examples, None)
        if self.options(spec)["mode"] == "bucc":
            gold = split.gold_pairs()
            return bucc_f1(predictions["pairs"], gold) if gold else None
        target_position = {tid: i for i, tid in enumerate(split.target_ids)}
        if not all(g in target_position for g in split.gold):
            return None
        gold = [target_position[g] for g in split.gold]
        scores = tatoeba_accuracy(predictions["forward"], gold)
        # English -> other language: the source whose gold is each target.
        source_of = {g: i for i, g in enumerate(split.gold)}
        backward_gold = [source_of.get(tid, -1) for tid in split.target_ids]
        backward = tatoeba_accuracy(predictions["backward"], backward_gold)
        scores["accuracy_en_to_xx"] = backward["accuracy"]
        return scores

    def render_predictions(
        self, spec: TaskSpec, examples: datasets.Dataset, predictions: Any
    ) -> str:
        if self.options(spec)["mode"] == "bucc":
            return "".join(f"{src}\t{tgt}\n" for src, tgt in predictions["pairs"])
        return "".join(f"{index}\n" for index in predictions["forward"])


class _Split:
    """The two sides of a retrieval split, with embeddings when outputs are given."""

    def __init__(self, examples: datasets.Dataset, embeddings: np.ndarray | None) -> None:
        sides = np.asarray(examples["side"])
        ids = np.asarray(examples["id"])
        is_source = sides == "source"
        self.source_ids = ids[is_source].tolist()
        self.target_ids = ids[~is_source].tolist()
        self.gold = np.asarray(examples["gold"])[is_source].tolist()
        texts = np.asarray([text.strip() for text in examples["text"]], dtype=object)
        self.source_texts = texts[is_source].tolist()
        self.target_texts = texts[~is_source].tolist()
        if not self.source_ids or not self.target_ids:
            raise ValueError("a retrieval split needs source and target sentences")
        if embeddings is not None:
            self.source = embeddings[is_source]
            self.target = embeddings[~is_source]

    @classmethod
    def of(cls, examples: datasets.Dataset, outputs: FeatureOutputs | None) -> _Split:
        embeddings = None
        if outputs is not None:
            embeddings = np.stack([out["embedding"] for out in outputs]).astype(np.float32)
        return cls(examples, embeddings)

    def gold_pairs(self) -> set[tuple[str, str]]:
        return {(s, g) for s, g in zip(self.source_ids, self.gold, strict=True) if g}
