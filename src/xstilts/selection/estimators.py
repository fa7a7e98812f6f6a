"""The transferability estimators: each scores one intermediate option for one target
(higher: predicted better), and says how long it took.

- logme (You et al. 2021): LogME of the target's English training data on the
  features of the option's intermediate-trained encoder (the baseline: the pretrained
  one); selection/features.py says what rows and labels each format gives.
- semb (Poth et al. 2021): cosine similarity of the two datasets' mean sentence
  embeddings (each input sequence mean-pooled, then averaged over the dataset), from
  the grid's pretrained encoder: no intermediate model needed.
- textemb (Vu et al. 2020): the same with every token weighted alike: the mean of the
  last layer's token states over the whole dataset.
- fewshot: the target trained a few steps from the option's encoder (the one training
  loop), ranked by its English validation score (selection/fewshot.py).
- size: the intermediate phase's training examples (a baseline; the baseline option 0).

Data-only estimators (semb, textemb) have no intermediate data to compare for the
baseline option: they leave it unscored, ranked last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xstilts.config import ExperimentConfig, ModelConfig, TrainingConfig
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import TRAIN_EXAMPLES_FILE
from xstilts.formats import get_format
from xstilts.io import read_json
from xstilts.modeling import build_encoder, load_tokenizer
from xstilts.selection import data
from xstilts.selection.candidates import Candidate, TargetCandidates
from xstilts.selection.features import labelled_features, sequence_embeddings
from xstilts.selection.logme import logme
from xstilts.selection.settings import SelectionSettings
from xstilts.tasks.spec import TaskSpec
from xstilts.train.loop import BEST_DIR

log = logging.getLogger(__name__)


@dataclass
class Estimate:
    value: float | None
    """None: the method cannot score this option (see the note)."""
    seconds: float
    note: str = ""
    load: float | None = None
    """The machine's 1-minute load average when it was made (seconds depend on it)."""


@dataclass
class DatasetVectors:
    sentence: np.ndarray
    """Mean of the per-sequence mean embeddings (SEmb)."""
    token: np.ndarray
    """Mean of all token states (TextEmb)."""
    size: int
    """Training examples a run reads (weights tasks of a multi-task option)."""


@dataclass
class Context:
    """What estimators share across options and targets: tokenizers, the target's
    features, dataset embeddings, and the seconds spent making them."""

    out_root: Path
    settings: SelectionSettings
    device: torch.device = field(
        default_factory=lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    tokenizers: dict[str, PreTrainedTokenizerBase] = field(default_factory=dict)
    target_features: dict[str, datasets.Dataset] = field(default_factory=dict)
    vectors: dict[str, DatasetVectors] = field(default_factory=dict)
    shared_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds of work shared by the options of a target, per target."""
    pretrained: dict[str, PreTrainedModel] = field(default_factory=dict)

    def tokenizer(self, model: ModelConfig) -> PreTrainedTokenizerBase:
        key = model.model_dump_json()
        if key not in self.tokenizers:
            self.tokenizers[key] = load_tokenizer(model)
        return self.tokenizers[key]

    def encoder(self, config: ExperimentConfig, init_from: Path | None) -> PreTrainedModel:
        """An option's encoder (the pretrained one, with None, is built once)."""
        key = config.model.model_dump_json()
        if init_from is None and key in self.pretrained:
            return self.pretrained[key]
        encoder = build_encoder(config.model, self.tokenizer(config.model), init_from)
        encoder = encoder.to(self.device).eval()
        if init_from is None:
            self.pretrained[key] = encoder
        return encoder

    def charge(self, target: str, seconds: float) -> None:
        self.shared_seconds[target] = self.shared_seconds.get(target, 0.0) + seconds

    def features_of(self, group: TargetCandidates) -> datasets.Dataset:
        """The target's training features (its first option's experiment: every option
        of a target trains on the same target data)."""
        if group.target not in self.target_features:
            started = time.perf_counter()
            task, training = _task_of(group)
            config = group.candidates[0].config
            loaded, _ = data.training_examples(task, config, training, self.settings.max_examples)
            assert training.max_length is not None
            tokenizer = self.tokenizer(config.model)
            features = data.encoded(loaded, task, config, tokenizer, training.max_length)
            self.target_features[group.target] = features
            self.charge(group.target, time.perf_counter() - started)
        return self.target_features[group.target]


def _task_of(group: TargetCandidates) -> tuple[TaskSpec, TrainingConfig]:
    if group.task is None or group.training is None:
        raise XstiltsError(
            f"target '{group.target}': no English training data (it does not train and has "
            "no target stages), so no estimator can rank its options"
        )
    return group.task, group.training


def start_of(candidate: Candidate) -> Path | None:
    """The encoder an option hands on: its intermediate phase's (None: pretrained)."""
    if candidate.inter_dir is None:
        return None
    inter = candidate.config.intermediate
    if inter is not None and inter.adapters is not None:
        raise XstiltsError(
            f"option '{candidate.option}': its intermediate phase trains adapters; selection "
            "reads encoders trained in full (use --method semb, textemb or size)"
        )
    return candidate.inter_dir / BEST_DIR


def estimate_logme(ctx: Context, group: TargetCandidates, candidate: Candidate) -> Estimate:
    features = ctx.features_of(group)
    started = time.perf_counter()
    task, _ = _task_of(group)
    encoder = ctx.encoder(candidate.config, start_of(candidate))
    pad = ctx.tokenizer(candidate.config.model).pad_token_id
    labelled = labelled_features(
        get_format(task.format),
        encoder,
        features,
        pad,
        task=task.name,
        batch_size=ctx.settings.batch_size,
    )
    value = logme(labelled.features, labelled.targets)
    seconds = time.perf_counter() - started
    note = f"{labelled.features.shape[0]} rows x {labelled.targets.shape[1]} columns"
    return Estimate(value, seconds, note)


def _vectors(
    ctx: Context, key: str, task: TaskSpec, config: ExperimentConfig, training: TrainingConfig
) -> tuple[DatasetVectors, float]:
    """The dataset's embedding vectors from the grid's pretrained encoder, made once;
    and the seconds that took (0 when reused)."""
    if key in ctx.vectors:
        return ctx.vectors[key], 0.0
    started = time.perf_counter()
    loaded, size = data.training_examples(task, config, training, ctx.settings.max_examples)
    assert training.max_length is not None
    tokenizer = ctx.tokenizer(config.model)
    features = data.encoded(loaded, task, config, tokenizer, training.max_length)
    encoder = ctx.encoder(config, None)
    fmt = get_format(task.format)
    embedded = sequence_embeddings(
        fmt, encoder, features, tokenizer.pad_token_id, batch_size=ctx.settings.batch_size
    )
    weights = embedded.tokens[:, None].astype(np.float64)
    vectors = DatasetVectors(
        sentence=embedded.means.astype(np.float64).mean(0),
        token=(embedded.means * weights).sum(0) / weights.sum(),
        size=size,
    )
    ctx.vectors[key] = vectors
    return vectors, time.perf_counter() - started


def _option_vectors(ctx: Context, candidate: Candidate) -> tuple[DatasetVectors, float]:
    """An option's intermediate data as one dataset: its tasks' vectors weighted by
    the examples a run trains on of each."""
    inter = candidate.config.intermediate
    assert inter is not None
    parts, seconds = [], 0.0
    for spec in candidate.experiment.intermediate:
        settings = inter.task_settings[spec.name]
        training = inter.training.model_copy(update={"max_length": settings.max_length})
        model = candidate.config.model.model_dump_json()
        key = f"{model}|{spec.name}|{training.max_train_examples}|{training.max_length}"
        vectors, took = _vectors(ctx, key, spec, candidate.config, training)
        parts.append(vectors)
        seconds += took
    sizes = np.array([p.size for p in parts], dtype=np.float64)
    weights = sizes / sizes.sum()
    merged = DatasetVectors(
        sentence=sum(w * p.sentence for w, p in zip(weights, parts, strict=True)),
        token=sum(w * p.token for w, p in zip(weights, parts, strict=True)),
        size=int(sizes.sum()),
    )
    return merged, seconds


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def _embedding_estimate(kind: str) -> Callable[[Context, TargetCandidates, Candidate], Estimate]:
    def estimate(ctx: Context, group: TargetCandidates, candidate: Candidate) -> Estimate:
        task, training = _task_of(group)
        config = group.candidates[0].config
        key = f"{config.model.model_dump_json()}|target|{group.target}"
        target, took = _vectors(ctx, key, task, config, training)
        ctx.charge(group.target, took)
        if candidate.is_baseline:
            return Estimate(None, 0.0, "no intermediate data to compare")
        option, seconds = _option_vectors(ctx, candidate)
        value = _cosine(getattr(option, kind), getattr(target, kind))
        return Estimate(value, seconds)

    return estimate


def estimate_size(ctx: Context, group: TargetCandidates, candidate: Candidate) -> Estimate:
    started = time.perf_counter()
    if candidate.inter_dir is None:
        return Estimate(0.0, 0.0, "no intermediate data")
    counted = candidate.inter_dir / TRAIN_EXAMPLES_FILE
    if counted.is_file():
        size = sum(read_json(counted).values())
    else:  # not trained yet: count what it would train on
        inter = candidate.config.intermediate
        assert inter is not None
        size = sum(
            data.training_examples(spec, candidate.config, inter.training, 1)[1]
            for spec in candidate.experiment.intermediate
        )
    return Estimate(float(size), time.perf_counter() - started)


def estimate_fewshot(ctx: Context, group: TargetCandidates, candidate: Candidate) -> Estimate:
    from xstilts.selection.fewshot import fewshot_score

    task, training = _task_of(group)
    features = ctx.features_of(group)
    started = time.perf_counter()
    score, steps = fewshot_score(ctx, candidate, task, training, features, start_of(candidate))
    return Estimate(score, time.perf_counter() - started, f"{steps} steps")


ESTIMATORS: dict[str, Callable[[Context, TargetCandidates, Candidate], Estimate]] = {
    "logme": estimate_logme,
    "semb": _embedding_estimate("sentence"),
    "textemb": _embedding_estimate("token"),
    "fewshot": estimate_fewshot,
    "size": estimate_size,
}
NEEDS_INTERMEDIATE_MODELS = {"logme", "fewshot"}


def settings_key(method: str, settings: SelectionSettings) -> dict[str, Any]:
    """The settings an estimate of ``method`` depends on (part of its cache key)."""
    used: dict[str, Any] = {"method": method}
    if method in ("logme", "semb", "textemb", "fewshot"):
        used["max_examples"] = settings.max_examples
    if method == "fewshot":
        used["steps"] = settings.fewshot_steps
        used["validation"] = settings.fewshot_validation_examples
    return used
