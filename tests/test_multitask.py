"""Multi-task intermediate training: samplers, per-task settings, a mixed-format run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import chisquare

from tests.conftest import REAL_DATA
from tests.kills import kill_after_checkpoint
from xstilts.config import SamplerConfig, parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.resolve import resolve
from xstilts.train.sampling import TaskSampler, sampling_weights

SIZES = {"mnli": 400_000, "squad": 90_000, "hellaswag": 40_000, "csqa": 10_000}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SamplerConfig(), [400_000, 90_000, 40_000, 10_000]),
        (SamplerConfig(strategy="uniform"), [1, 1, 1, 1]),
        (SamplerConfig(strategy="capped", cap=50_000), [50_000, 50_000, 40_000, 10_000]),
        (SamplerConfig(strategy="temperature", temperature=2.0), [632.4555, 300.0, 200.0, 100.0]),
        (
            SamplerConfig(
                strategy="weights", weights={"mnli": 1, "squad": 2, "hellaswag": 0, "csqa": 1}
            ),
            [1, 2, 0, 1],
        ),
    ],
    ids=["proportional", "uniform", "capped", "temperature", "weights"],
)
def test_sampling_weights(config, expected):
    assert sampling_weights(SIZES, config) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(),
        SamplerConfig(strategy="uniform"),
        SamplerConfig(strategy="capped", cap=50_000),
        SamplerConfig(strategy="temperature", temperature=3.0),
        SamplerConfig(
            strategy="weights", weights={"mnli": 1, "squad": 2, "hellaswag": 3, "csqa": 4}
        ),
    ],
    ids=["proportional", "uniform", "capped", "temperature", "weights"],
)
def test_sampler_draws_tasks_at_the_stated_rates(config):
    weights = np.asarray(sampling_weights(SIZES, config))
    rates = weights / weights.sum()
    sampler = TaskSampler(list(weights), seed=3)
    draws = 30_000
    counts = np.bincount([sampler.task_for_step(s) for s in range(draws)], minlength=len(rates))
    # the stated rates fit ...
    assert chisquare(counts, rates * draws).pvalue > 1e-4
    # ... and rates 10% off for one task do not
    wrong = rates * np.array([0.9, 1.0, 1.0, 1.0])
    wrong = wrong / wrong.sum()
    assert chisquare(counts, wrong * draws).pvalue < 1e-4


def test_sampled_sequence_is_fixed_by_the_seed():
    first = [TaskSampler([3, 2, 1], seed=5).task_for_step(s) for s in range(500)]
    again = [TaskSampler([3, 2, 1], seed=5).task_for_step(s) for s in range(500)]
    other = [TaskSampler([3, 2, 1], seed=6).task_for_step(s) for s in range(500)]
    assert first == again
    assert first != other
    # resuming at step 250 continues the same sequence: the draw depends on the step alone
    assert [TaskSampler([3, 2, 1], seed=5).task_for_step(s) for s in range(250, 500)] == first[250:]


@pytest.mark.parametrize(
    ("intermediate", "fragment"),
    [
        ({"tasks": ["mnli"], "task_settings": {"squad": {}}}, "task_settings names squad"),
        ({"tasks": ["mnli"], "sampler": {"strategy": "capped"}}, "needs sampler.cap"),
        (
            {"tasks": ["mnli", "qqp"], "sampler": {"strategy": "weights", "weights": {"mnli": 1}}},
            "no weight for qqp",
        ),
        ({"tasks": ["mnli"], "validation_weights": {"mnli": 0}}, "must not all be zero"),
        ({"tasks": ["mnli"], "sampler": {"strategy": "often"}}, "intermediate.sampler.strategy"),
    ],
)
def test_bad_multitask_settings_name_the_key(intermediate, fragment):
    with pytest.raises(XstiltsError, match=fragment):
        parse_config({"target": {"task": "xnli"}, "intermediate": intermediate})


NINE = [
    "anli_plus",
    "mnli",
    "qqp",
    "squad",
    "hellaswag",
    "ccg",
    "cosmosqa",
    "commonsenseqa",
    "sst2",
]


def test_nine_task_intermediate_phase_from_catalog_names(tmp_path):
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg" / "tags.txt").write_text("N\nNP\n(S\\NP)/NP\n")
    config = parse_config(
        {
            "target": {"task": "xnli"},
            "intermediate": {"tasks": NINE, "task_settings": {"squad": {"batch_size": 8}}},
            "data": {"data_dir": str(tmp_path)},
        }
    )
    experiment = resolve(config)
    assert [s.name for s in experiment.intermediate] == NINE
    settings = experiment.config.intermediate.task_settings
    assert settings["squad"].batch_size == 8 and settings["squad"].max_length == 384
    assert settings["mnli"].batch_size == 32 and settings["mnli"].max_length == 256
    assert experiment.intermediate[NINE.index("ccg")].labels == ["N", "NP", "(S\\NP)/NP"]
    heads = {s.head_name for s in experiment.intermediate}
    assert len(heads) == 8  # anli_plus and mnli share the NLI head
    assert experiment.intermediate_name.startswith("+".join(NINE))


def _write_choice_task(folder: Path) -> dict:
    """A small synthetic 3-choice task: pick the option that repeats the context's colour."""
    rng = random.Random(0)
    colours = ["red", "blue", "green", "white", "black", "yellow"]
    rows = []
    for index in range(200):
        picked = rng.sample(colours, 3)
        label = rng.randrange(3)
        rows.append(
            {
                "ctx": f"The car is {picked[label]}.",
                "endings": [f"It is {c}." for c in picked],
                "label": label,
                "id": str(index),
            }
        )
    for split in ("train", "valid"):
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"choices-{split}.jsonl").write_text(lines)
    return {
        "name": "colour_choice",
        "family": "commonsense",
        "format": "multiple_choice",
        "labels": ["0", "1", "2"],
        "max_length": 32,
        "splits": {
            "train": {
                "local": {
                    "path": "choices-train.jsonl",
                    "columns": {"context": "ctx", "choices": "endings"},
                }
            },
            "validation": {
                "local": {
                    "path": "choices-valid.jsonl",
                    "columns": {"context": "ctx", "choices": "endings"},
                }
            },
        },
    }


def _write_mlm_task(folder: Path) -> dict:
    """Continued MLM on real German, French and English Tatoeba sentences."""
    (folder / "mlm").mkdir()
    for lang, code in (("en", "deu-eng.eng"), ("de", "deu-eng.deu"), ("fr", "fra-eng.fra")):
        lines = (REAL_DATA / "tatoeba" / f"tatoeba.{code}").read_text().splitlines()
        (folder / "mlm" / f"{lang}.train.txt").write_text("\n".join(lines[:300]) + "\n")
        (folder / "mlm" / f"{lang}.valid.txt").write_text("\n".join(lines[300:340]) + "\n")
    return {
        "name": "mlm_sample",
        "family": "mlm",
        "format": "mlm",
        "metric": "mlm_accuracy",
        "languages": ["en", "de", "fr"],
        "train_languages": ["en", "de", "fr"],
        "max_length": 48,
        "splits": {
            "train": {"local": {"path": "mlm/{lang}.train.txt"}},
            "validation": {"local": {"path": "mlm/{lang}.valid.txt"}},
        },
    }


def test_multitask_run_with_four_formats_feeds_the_target(tiny_config, demo_data, tmp_path):
    demo_dir, demo_tasks = demo_data
    data_dir = tmp_path / "data"
    (data_dir / "squad").mkdir(parents=True)
    (data_dir / "demo").symlink_to(demo_dir / "demo")
    for name in ("train-v1.1.json", "dev-v1.1.json"):  # XQuAD's English file stands in
        shutil.copy(REAL_DATA / "xquad" / "xquad.en.json", data_dir / "squad" / name)
    choice_file = data_dir / "choice-task.yaml"
    choice_file.write_text(
        yaml.safe_dump({"tasks": [_write_choice_task(data_dir), _write_mlm_task(data_dir)]})
    )

    training = {
        "learning_rate": 1e-3,
        "max_steps": 24,
        "eval_every_steps": 12,
        "max_train_examples": 120,
        "max_eval_examples": 40,
    }
    config = tiny_config(
        intermediate__tasks=["demo_nli", "squad", "colour_choice", "mlm_sample"],
        intermediate__training=training,
        intermediate__sampler={"strategy": "uniform"},
        intermediate__task_settings={
            "squad": {"batch_size": 4, "max_length": 256, "gradient_accumulation_steps": 2}
        },
        intermediate__validation_weights={
            "demo_nli": 1.0,
            "squad": 2.0,
            "colour_choice": 1.0,
            "mlm_sample": 1.0,
        },
        data__task_files=[str(demo_tasks), str(choice_file)],
        data__data_dir=str(data_dir),
    )
    outcome = run_experiment(config, tmp_path / "runs")

    inter_dir = tmp_path / "runs" / "intermediate" / outcome.results["intermediate_run"]
    training_log = json.loads((inter_dir / "training.json").read_text())
    assert training_log["total_steps"] == 24
    for entry in training_log["validation"]:
        per_task = entry["tasks"]
        assert set(per_task) == {"demo_nli", "squad", "colour_choice", "mlm_sample"}
        combined = (
            per_task["demo_nli"]["accuracy"]
            + 2 * per_task["squad"]["f1"]
            + per_task["colour_choice"]["accuracy"]
            + per_task["mlm_sample"]["mlm_accuracy"]
        ) / 5
        assert entry["score"] == pytest.approx(combined)
    resolved = yaml.safe_load((inter_dir / "config.yaml").read_text())
    assert resolved["intermediate"]["task_settings"]["squad"]["max_length"] == 256
    assert resolved["intermediate"]["task_settings"]["demo_nli"]["max_length"] == 64
    heads = json.loads((inter_dir / "best" / "heads.json").read_text())["heads"]
    assert sorted(heads) == ["colour_choice", "demo_nli", "mlm_sample", "squad"]
    # the MLM task trains on all three languages' text (max_train_examples caps the three
    # together: 120 lines drawn from all of them), validates on English
    log = (inter_dir / "train.log").read_text()
    assert "mlm_sample 120 examples (weight 1)" in log
    assert "demo_nli 120 examples (weight 1)" in log
    # the multi-task encoder feeds the target phase like a single-task one
    assert outcome.results["intermediate_tasks"] == [
        "demo_nli",
        "squad",
        "colour_choice",
        "mlm_sample",
    ]
    assert set(outcome.results["languages"]) == {"en", "de", "fr"}


def test_crashed_multitask_phase_resumes_with_identical_metrics(tiny_config, tmp_path, monkeypatch):

    def config():
        return tiny_config(
            intermediate__tasks=["demo_nli", "demo_paraphrase"],
            intermediate__training={
                "learning_rate": 1e-3,
                "batch_size": 16,
                "max_steps": 18,
                "eval_every_steps": 6,
                "checkpoint_every_steps": 4,
                "max_train_examples": 200,
                "max_eval_examples": 40,
            },
        )

    reference = run_experiment(config(), tmp_path / "uninterrupted")
    interrupted = tmp_path / "interrupted"
    kill_after_checkpoint(
        monkeypatch, lambda: run_experiment(config(), interrupted), 8, "intermediate"
    )
    resumed = run_experiment(config(), tmp_path / "interrupted")

    inter = "intermediate/" + resumed.results["intermediate_run"]
    log = (tmp_path / "interrupted" / inter / "train.log").read_text()
    assert "from step 8 of 18" in log
    history = [
        json.loads((tmp_path / root / inter / "training.json").read_text())["validation"]
        for root in ("uninterrupted", "interrupted")
    ]
    assert history[0] == history[1]
    assert resumed.results["languages"] == {
        lang: {**scores, "predictions": resumed.results["languages"][lang]["predictions"]}
        for lang, scores in reference.results["languages"].items()
    }
