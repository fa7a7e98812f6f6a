"""The examples an estimator reads: a task's training split as a run would train on it
(its caps and subsample seed), then at most ``limit`` of them at random, and their
features (tokenised once, cached on disk like a run's)."""

from __future__ import annotations

import logging

import datasets

from xstilts.config import ExperimentConfig, TrainingConfig, config_hash
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import load_task_split
from xstilts.features import encode_split
from xstilts.formats import get_format
from xstilts.tasks.loading import LoadedSplit
from xstilts.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


def training_examples(
    spec: TaskSpec, config: ExperimentConfig, training: TrainingConfig, limit: int | None
) -> tuple[LoadedSplit, int]:
    """The task's training examples (all its training languages, capped by
    ``training.max_train_examples`` as a run caps them, checked as a run checks them),
    then at most ``limit`` of them; and how many a run trains on."""
    fmt = get_format(spec.format)
    seed = config.data.subsample_seed_for(config.seed)
    cap = training.max_train_examples
    parts = [load_task_split(spec, "train", lang, config, None) for lang in spec.train_languages]
    examples = datasets.concatenate_datasets([part.examples for part in parts])
    if cap is not None and len(examples) > cap:
        examples = fmt.subsample(examples, cap, seed)
    examples, _ = fmt.prepare_training_examples(spec, examples)
    if len(examples) == 0:
        raise XstiltsError(f"task '{spec.name}': no training example is left after checks")
    size = len(examples)
    if limit is not None and len(examples) > limit:
        examples = fmt.subsample(examples, limit, seed)
    payload = {"parts": [p.fingerprint for p in parts], "cap": cap, "limit": limit, "seed": seed}
    language = "+".join(spec.train_languages)
    fingerprint = config_hash(payload)
    return LoadedSplit(spec.name, "train", language, examples, fingerprint, 0), size


def encoded(
    loaded: LoadedSplit, spec: TaskSpec, config: ExperimentConfig, tokenizer, max_length: int
) -> datasets.Dataset:
    """Training features of ``loaded`` (as the loss sees them), from the feature cache."""
    assert config.data.cache_dir is not None
    fmt = get_format(spec.format)
    return encode_split(loaded, fmt, spec, tokenizer, max_length, config.data.cache_dir)
