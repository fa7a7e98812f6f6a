"""Zero-shot evaluation of a trained model on every language of a target task.

Two savings over running every feature of every language through the model:

- shared features (a candidate pool that every language of the task searches,
  as LAReQA's and Mewsli-X's; see ``TaskFormat.shared_features``) are embedded
  once per evaluator and language-adapter setting, and reused while the next
  language brings the same tokens (a digest of their token columns);
- with several processes (``Sharding``), each runs the model on one contiguous
  share of the features and the outputs are gathered, in feature order, on
  every process, which then predicts and scores as before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from transformers import PreTrainedTokenizerBase

from xstilts.formats import TaskFormat
from xstilts.formats.base import FeatureOutputs
from xstilts.inference import Sharding, run_sharded
from xstilts.io import atomic_write_text
from xstilts.metrics import get_metric
from xstilts.modeling import MultiTaskModel
from xstilts.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class EvaluationSet:
    """Examples and features of one split in one language."""

    examples: datasets.Dataset
    features: datasets.Dataset


@dataclass
class LanguageSplit:
    language: str
    data: EvaluationSet
    calibration_data: EvaluationSet | None = None
    """The language's validation split, for formats that calibrate on it (BUCC)."""


def token_digest(features: datasets.Dataset, rows: np.ndarray | list[int]) -> str:
    """A digest of the token columns of ``features[rows]``, in order: equal digests mean
    the same sequences, hence the same outputs from one model."""
    table = features.select(rows).with_format("arrow")[:]
    digest = hashlib.blake2b(digest_size=16)
    for name in ("input_ids", "token_type_ids"):
        if name not in table.column_names:
            continue
        for chunk in table.column(name).chunks:
            digest.update(name.encode())
            digest.update(pc.list_value_length(chunk).to_numpy(zero_copy_only=False).tobytes())
            digest.update(pc.list_flatten(chunk).to_numpy(zero_copy_only=False).tobytes())
    return digest.hexdigest()


def _language_adapter_in_use(model: MultiTaskModel) -> str | None:
    """The name of the MAD-X language adapter now routed in (shared outputs depend on
    it); None without one."""
    return model.routes.language if model.routes is not None else None


def prediction_path(root: Path, spec: TaskSpec, fmt: TaskFormat, split: str, lang: str) -> Path:
    """The XTREME submission layout under ``root``: <task>/<split>-<lang>.<ext>."""
    return root / spec.name / f"{split}-{lang}.{fmt.prediction_suffix}"


class Evaluator:
    def __init__(
        self,
        model: MultiTaskModel,
        spec: TaskSpec,
        fmt: TaskFormat,
        *,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int,
        device: torch.device,
        sharding: Sharding | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.fmt = fmt
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = device
        self.sharding = sharding
        self._shared: tuple[tuple[str | None, str], FeatureOutputs] | None = None

    def outputs(self, data: EvaluationSet, desc: str) -> FeatureOutputs:
        """Model outputs of every feature, in feature order."""
        features = data.features
        shared = self.fmt.shared_features(self.spec, features)
        if shared is None or len(shared) == 0:
            return self._run(features, desc)
        key = (_language_adapter_in_use(self.model), token_digest(features, shared))
        if self._shared is not None and self._shared[0] == key:
            log.info("%s: reusing the embeddings of %d shared features", desc, len(shared))
        else:
            self._shared = None  # free the previous pool's outputs first
            pool = self._run(features.select(shared), f"{desc} (shared)")
            self._shared = (key, pool)
        own = np.setdiff1d(np.arange(len(features)), shared)
        results: list[dict[str, np.ndarray] | None] = [None] * len(features)
        for row, output in zip(own.tolist(), self._run(features.select(own), desc), strict=True):
            results[row] = output
        for row, output in zip(np.asarray(shared).tolist(), self._shared[1], strict=True):
            results[row] = output
        return results  # type: ignore[return-value]  # every row is filled

    def _run(self, features: datasets.Dataset, desc: str) -> FeatureOutputs:
        """``run_inference`` over ``features``, split across processes when sharded."""
        return run_sharded(
            self.model,
            self.spec.head_name,
            self.fmt,
            features,
            self.sharding,
            batch_size=self.batch_size,
            pad_token_id=self.tokenizer.pad_token_id,
            device=self.device,
            desc=desc,
        )

    def language(self, item: LanguageSplit, split: str, predictions_dir: Path) -> dict[str, Any]:
        """Predict and score one language; write its prediction file in ``predictions_dir``."""
        spec, fmt = self.spec, self.fmt
        calibration = None
        if item.calibration_data is not None:
            dev = item.calibration_data
            dev_outputs = self.outputs(dev, f"calibrate {spec.name}/{item.language}")
            calibration = fmt.calibrate(spec, dev.examples, dev.features, dev_outputs)
        data = item.data
        outputs = self.outputs(data, f"evaluate {spec.name}/{item.language}")
        predictions = fmt.predict(spec, data.examples, data.features, outputs, calibration)
        path = prediction_path(predictions_dir, spec, fmt, split, item.language)
        if self.sharding is None or self.sharding.rank == 0:  # one writer among processes
            atomic_write_text(path, fmt.render_predictions(spec, data.examples, predictions))
        scores = fmt.score(spec, data.examples, predictions, language=item.language)
        entry: dict[str, Any] = {"num_examples": len(data.examples), "predictions": str(path)}
        if calibration is not None:
            entry["calibration"] = calibration
        main_key = get_metric(spec.metric).main_key
        if scores is not None:
            entry.update(scores)
            log.info("%s %s: %s %.2f", spec.name, item.language, main_key, scores[main_key])
        else:
            log.info("%s %s: no gold labels, predictions written only", spec.name, item.language)
        return entry
