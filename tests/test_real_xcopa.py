"""XCOPA end to end on real files of the public release (shipped in resources/real/xcopa)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REAL_DATA
from xstilts.config import parse_config
from xstilts.experiment.pipeline import run_experiment

# A few English COPA-format examples (SuperGLUE's COPA/train.jsonl layout), written
# here because the real COPA training set is not among the shared samples.
COPA = [
    {
        "premise": "The man turned on the faucet.",
        "choice1": "The toilet filled with water.",
        "choice2": "Water flowed from the spout.",
        "question": "effect",
        "label": 1,
        "idx": 0,
    },
    {
        "premise": "The girl found a bug in her cereal.",
        "choice1": "She poured milk in the bowl.",
        "choice2": "She lost her appetite.",
        "question": "effect",
        "label": 1,
        "idx": 1,
    },
    {
        "premise": "The woman retired.",
        "choice1": "She received her pension.",
        "choice2": "She paid off her mortgage.",
        "question": "effect",
        "label": 0,
        "idx": 2,
    },
    {
        "premise": "I wanted to conserve energy.",
        "choice1": "I swept the floor.",
        "choice2": "I shut off the light.",
        "question": "effect",
        "label": 1,
        "idx": 3,
    },
    {
        "premise": "My body cast a shadow over the grass.",
        "choice1": "The sun was rising.",
        "choice2": "The grass was cut.",
        "question": "cause",
        "label": 0,
        "idx": 4,
    },
    {
        "premise": "The runner wore shorts.",
        "choice1": "The forecast predicted high temperatures.",
        "choice2": "She planned to run along the beach.",
        "question": "cause",
        "label": 0,
        "idx": 5,
    },
]


def test_xcopa_target_from_real_files(tmp_path, feature_cache):
    data_dir = tmp_path / "data"
    (data_dir / "COPA").mkdir(parents=True)
    lines = "".join(json.dumps(row) + "\n" for row in COPA * 8)
    (data_dir / "COPA" / "train.jsonl").write_text(lines)
    (data_dir / "COPA" / "val.jsonl").write_text(lines)
    shutil.copytree(REAL_DATA / "xcopa", data_dir / "xcopa")

    config = parse_config(
        {
            "model": {"tiny": {}},
            "target": {
                "task": "xcopa",
                "training": {"batch_size": 8, "epochs": 1, "learning_rate": 1e-3},
            },
            "evaluation": {"languages": ["et", "it", "zh"]},
            "data": {"source": "local", "data_dir": str(data_dir), "cache_dir": str(feature_cache)},
        }
    )
    outcome = run_experiment(config, tmp_path / "runs")
    results = outcome.results
    assert set(results["languages"]) == {"et", "it", "zh"}
    for lang in ("et", "it", "zh"):
        gold = [
            json.loads(line)["label"]
            for line in (REAL_DATA / "xcopa" / f"test.{lang}.jsonl").open()
        ]
        predicted_file = outcome.run_dir / "predictions" / "xcopa" / f"test-{lang}.jsonl"
        predicted = [json.loads(line)["label"] for line in predicted_file.open()]
        assert len(predicted) == len(gold) == results["languages"][lang]["num_examples"]
        correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
        assert results["languages"][lang]["accuracy"] == pytest.approx(100 * correct / len(gold))
    assert results["english"]["split"] == "validation"
