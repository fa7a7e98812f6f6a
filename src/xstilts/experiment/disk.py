"""Disk estimates for a plan under ``runtime.keep`` (experiment/retention.py).

An estimate, from parameter counts rather than measurements. The encoder's parameters
are counted from its config (the installed model's config.json, a hub model's config
in the local hub cache, else the config of a known model below: no download), built on
PyTorch's meta device, with the parts ``model.freeze_*`` keeps fixed. Every parameter
is stored in fp32, 4 bytes (mixed precision keeps fp32 weights and optimizer state).

- A phase without adapters keeps, in ``best/``, what differs from the pretrained
  encoder: the parameters that train (modeling/deltas.py), input embeddings that
  train as at most ``CHANGED_EMBEDDING_ROWS`` of their rows (only the rows that
  changed are saved); a merged adapter phase keeps the whole encoder. An adapter
  phase keeps its adapters, counted as ``ADAPTER_SHARE`` of the encoder (a
  bottleneck adapter with reduction 16 is about 0.6%; prefix tuning's
  reparametrisation more). Heads: one hidden x hidden layer.
- ``checkpoints/last``: the trained parameters and Adam's two moments (3 copies).
- A target run's predictions: ``PREDICTION_BYTES`` per test example and language
  (retrieval: ``RETRIEVAL_PREDICTION_BYTES``; sizes from experiment/costs.py).
- While a phase trains it holds its best model, its checkpoint, and a second copy of
  the larger of the two while it is written anew (the old copy stays until the
  atomic rename): ``peak``, counted once per run training at the same time.

The feature cache (``data.cache_dir``) and logs are not counted.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from xstilts.config import ModelConfig
from xstilts.experiment.costs import TEST_EXAMPLES_PER_LANGUAGE
from xstilts.experiment.resolve import ResolvedExperiment
from xstilts.formats import get_format

BYTES_PER_PARAMETER = 4
CHECKPOINT_COPIES = 3
ADAPTER_SHARE = 0.05
PREDICTION_BYTES = 100
RETRIEVAL_PREDICTION_BYTES = 10
DEFAULT_TEST_EXAMPLES = 1_000
CHANGED_EMBEDDING_ROWS = 60_000
"""Input embedding rows a delta is counted to keep when the embeddings train: an
assumption about how many distinct subwords an English task's text touches (a phase
started from another's keeps both's rows). The real number is measured when the delta
is saved: modeling/deltas.py stores only the rows that differ from the pretrained ones."""
"""Test examples per language of a task experiment/costs.py does not list."""

_XLMR = {"model_type": "xlm-roberta", "max_position_embeddings": 514, "type_vocab_size": 1}
KNOWN_CONFIGS: dict[str, dict] = {
    "xlm-roberta-large": {
        **_XLMR,
        "vocab_size": 250002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "xlm-roberta-base": {
        **_XLMR,
        "vocab_size": 250002,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "bert-base-multilingual-cased": {
        "model_type": "bert",
        "vocab_size": 119547,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "multilingual-e5-small": {
        "model_type": "bert",
        "vocab_size": 250037,
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    },
}
"""Hub models' configs, for when the model is neither installed nor readable."""


@dataclass(frozen=True)
class ModelSize:
    total: int
    """Encoder parameters."""
    trained: int
    """Those that train with the config's frozen parts fixed."""
    changed: int
    """Those a delta stores: ``trained``, trainable input embeddings counted as at most
    ``CHANGED_EMBEDDING_ROWS`` rows."""
    hidden: int
    source: str
    """Where the counts come from."""


@dataclass(frozen=True)
class RunDisk:
    kept: int
    """Bytes the run leaves on disk once finished."""
    peak: int
    """Bytes more, at worst, while it trains."""


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@functools.cache
def _model_size(key: str) -> ModelSize:
    model = ModelConfig.model_validate_json(key)
    config, source = _encoder_config(model)
    from transformers import AutoModel

    from xstilts.modeling import freeze

    with torch.device("meta"):
        try:
            encoder = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_config(config)
    freeze(encoder, embeddings=model.freeze_embeddings, layers=model.freeze_layers)
    parameters = list(encoder.parameters())
    trained = sum(p.numel() for p in parameters if p.requires_grad)
    embeddings = encoder.get_input_embeddings().weight
    unchanged = 0
    if embeddings.requires_grad and embeddings.ndim == 2:
        unchanged = max(0, embeddings.shape[0] - CHANGED_EMBEDDING_ROWS) * embeddings.shape[1]
    return ModelSize(
        total=sum(p.numel() for p in parameters),
        trained=trained,
        changed=trained - unchanged,
        hidden=int(config.hidden_size),
        source=source,
    )


def _encoder_config(model: ModelConfig):
    """The encoder's transformers config, and where it came from."""
    from transformers import AutoConfig

    if model.tiny is not None:
        from xstilts.modeling.encoders import tiny_encoder_config

        # vocabulary: the shipped tiny tokenizer's order of magnitude
        return tiny_encoder_config(model.tiny, 1000), "the tiny model's config"
    try:
        from xstilts.model_store import model_location

        location = model_location(model.name)
        config = AutoConfig.from_pretrained(
            location, revision=model.revision, local_files_only=True
        )
        return config, location
    except Exception:  # neither installed nor in the hub cache, or not a model at all
        known = KNOWN_CONFIGS.get(_short(model.name))
        name = _short(model.name) if known is not None else "xlm-roberta-large"
        payload = dict(known or KNOWN_CONFIGS["xlm-roberta-large"])
        return AutoConfig.for_model(payload.pop("model_type"), **payload), f"{name}'s config"


def model_size(model: ModelConfig) -> ModelSize:
    """The encoder's parameters, and those that train (cached per model config)."""
    return _model_size(model.model_dump_json())


def _phase(size: ModelSize, *, adapters: bool, merged: bool = False) -> tuple[int, int]:
    """(best/ bytes, checkpoint bytes) of one phase."""
    trained = int(size.total * ADAPTER_SHARE) if adapters else size.trained
    changed = size.total if merged else trained if adapters else size.changed
    head = size.hidden * (size.hidden + 2)
    best = (changed + head) * BYTES_PER_PARAMETER
    return best, CHECKPOINT_COPIES * (trained + head) * BYTES_PER_PARAMETER


def _kept_and_peak(best: int, checkpoint: int, keep_best: bool, keep: str) -> RunDisk:
    kept = (best if keep_best else 0) + (checkpoint if keep == "all" else 0)
    # While one of the two is written anew, the old copy stays until the rename.
    return RunDisk(kept, best + checkpoint + max(best, checkpoint) - kept)


def intermediate_disk(experiment: ResolvedExperiment) -> RunDisk:
    config = experiment.config
    assert config.intermediate is not None
    size = model_size(config.model)
    best, checkpoint = _phase(size, adapters=config.intermediate.adapters is not None)
    return _kept_and_peak(best, checkpoint, True, config.runtime.keep)


def language_adapter_disk(experiment: ResolvedExperiment) -> RunDisk:
    config = experiment.config
    best, checkpoint = _phase(model_size(config.model), adapters=True)
    return _kept_and_peak(best, checkpoint, True, config.runtime.keep)


def target_disk(experiment: ResolvedExperiment) -> RunDisk:
    """A target run: its stages, its own training (if the task trains), predictions."""
    config = experiment.config
    size, keep = model_size(config.model), config.runtime.keep
    trains = get_format(experiment.target.format).trainable
    kept, peak = _predictions(experiment), 0
    for _ in config.target.stages:
        best, checkpoint = _phase(size, adapters=False)
        stage = _kept_and_peak(best, checkpoint, keep != "results" or not trains, keep)
        kept, peak = kept + stage.kept, max(peak, stage.peak)
    if trains:
        adapters = config.target.adapters
        best, checkpoint = _phase(
            size,
            adapters=adapters is not None and adapters.start != "merge",
            merged=adapters is not None and adapters.start == "merge",
        )
        own = _kept_and_peak(best, checkpoint, keep != "results", keep)
        kept, peak = kept + own.kept, max(peak, own.peak)
    return RunDisk(kept, peak)


def _predictions(experiment: ResolvedExperiment) -> int:
    spec = experiment.target
    examples = TEST_EXAMPLES_PER_LANGUAGE.get(spec.name, DEFAULT_TEST_EXAMPLES)
    max_examples = experiment.config.evaluation.max_examples
    if max_examples is not None:
        examples = min(examples, max_examples)
    per_example = RETRIEVAL_PREDICTION_BYTES if spec.format == "retrieval" else PREDICTION_BYTES
    return examples * len(experiment.languages) * per_example


def experiment_disk(experiment: ResolvedExperiment) -> RunDisk:
    """One experiment alone: its language adapters, intermediate and target runs."""
    parts = [target_disk(experiment)]
    if experiment.config.intermediate is not None:
        parts.append(intermediate_disk(experiment))
    parts += [language_adapter_disk(experiment)] * len(experiment.language_adapter_names or {})
    return RunDisk(sum(p.kept for p in parts), max(p.peak for p in parts))


def describe(kept: int, peak: int, keep: str, parallel: int = 1) -> str:
    """One line: what the plan needs on disk, and how that was estimated."""
    return (
        f"estimated disk: {gigabytes(kept + peak * parallel)} under runtime.keep: {keep} "
        f"({gigabytes(kept)} kept when finished, up to {gigabytes(peak)} more while "
        f"{'a run' if parallel == 1 else f'each of {parallel} runs'} trains; fp32 parameter "
        "counts, see xstilts/experiment/disk.py)"
    )


def gigabytes(count: float) -> str:
    return f"{count / 1e9:,.1f} GB" if count >= 1e8 else f"{count / 1e6:,.1f} MB"


def full_message(error: Exception, kept: int, peak: int, keep: str, parallel: int = 1) -> str:
    """The one sentence a full disk gets: where, what the plan needs, what to do."""
    folder = Path(str(getattr(error, "folder", "") or "."))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    return (
        f"{error} ({gigabytes(free)} free there), and the plan needs about "
        f"{gigabytes(kept + peak * parallel)} under runtime.keep: {keep}; free some space "
        "(xstilts clean OUT_DIR removes what finished runs no longer need) or give --out a "
        "larger disk, then run the same command again: finished runs and the last "
        "checkpoints are intact"
    )
