"""Zero-shot evaluation of a trained model on every language of a target task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from xstilts.formats import TaskFormat
from xstilts.formats.base import FeatureOutputs
from xstilts.inference import run_inference
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
    ) -> None:
        self.model = model
        self.spec = spec
        self.fmt = fmt
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = device

    def outputs(self, data: EvaluationSet, desc: str) -> FeatureOutputs:
        return run_inference(
            self.model,
            self.spec.head_name,
            self.fmt,
            data.features,
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
