"""The XQuAD-sentence QA setup that transfer_cpu.py and adapters_transfer_cpu.py
measure (the demo's recipe until the demo moved to the QNLI-style pairs): extractive
QA trained on the English questions of 30 XQuAD articles, tested on 12 other articles
in English, German, Chinese and Arabic; English POS tagging (800 UD EWT sentences) as
the intermediate task; multilingual-e5-small with the embeddings and the lowest four
layers frozen, one epoch a phase. Its data is the demo's (``xstilts.demo.real.write_demo_data``)."""

from __future__ import annotations

import json
from typing import Any

from xstilts.config import ExperimentConfig, parse_config
from xstilts.demo.real import DemoData
from xstilts.metrics import get_metric
from xstilts.samples import XQUAD_LANGUAGES

MODEL = "multilingual-e5-small"
TARGET = "xquad_sentences"
INTERMEDIATE = "ud_pos"


def setup_configs(data: DemoData) -> tuple[ExperimentConfig, ExperimentConfig]:
    """The baseline and the intermediate-task experiment."""
    target_training = {"learning_rate": 2e-4, "batch_size": 16, "epochs": 1, "max_length": 128}
    base: dict[str, Any] = {
        "seed": 1,
        "model": {"name": MODEL, "freeze_embeddings": True, "freeze_layers": 4},
        "target": {"task": TARGET, "training": target_training},
        "evaluation": {"languages": list(XQUAD_LANGUAGES)},
        "data": {
            "source": "local",
            "data_dir": str(data.data_dir),
            "task_files": [str(data.task_file)],
            "cache_dir": str(data.cache_dir),
        },
    }
    intermediate = {
        "tasks": [INTERMEDIATE],
        "training": {
            "learning_rate": 2e-4,
            "batch_size": 32,
            "epochs": 1,
            "max_length": 128,
            "max_train_examples": 800,
        },
    }
    baseline = parse_config({**base, "name": "demo-baseline"}, source="benchmark")
    with_intermediate = parse_config(
        {**base, "name": "demo-ud-pos", "intermediate": intermediate}, source="benchmark"
    )
    return baseline, with_intermediate


def whole_sentence_levels(data: DemoData) -> dict[str, float]:
    """Per test language, the F1 of answering every question with its whole context
    sentence: what a model gets without locating the answer."""
    metric = get_metric("squad")
    levels = {}
    for lang in XQUAD_LANGUAGES:
        path = data.data_dir / TARGET / f"test-{lang}.json"
        paragraphs = [
            p for a in json.loads(path.read_text("utf-8"))["data"] for p in a["paragraphs"]
        ]
        predictions = [p["context"] for p in paragraphs for _ in p["qas"]]
        references = [[a["text"] for a in qa["answers"]] for p in paragraphs for qa in p["qas"]]
        levels[lang] = metric.score(predictions, references)[metric.main_key]
    return levels
