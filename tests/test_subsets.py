"""Capped intermediate sets as the scaling and families studies use them: a subset per
seed, one cap over all of a task's training languages, a step budget that repeats a
small subset, and adversarial target training that covers the target's stages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig, parse_config
from xstilts.experiment.pipeline import _Runner, run_intermediate_phase
from xstilts.experiment.resolve import resolve


def _training_ids(config: ExperimentConfig, tmp_path: Path) -> list[str]:
    """The ids of the intermediate phase's training examples, as the pipeline loads them."""
    experiment = resolve(config)
    assert config.intermediate is not None
    runner = _Runner(experiment, tmp_path / "run", None, {})
    split = runner._train_split(experiment.intermediate[0], experiment.config.intermediate.training)
    return list(split.examples["id"])


def test_subsample_seed_seed_draws_a_subset_per_seed(tiny_config, tmp_path):
    def ids(seed: int, **data: Any) -> list[str]:
        config = tiny_config(
            intermediate=True,
            seed=seed,
            intermediate__training__max_train_examples=50,
            **{f"data__{key}": value for key, value in data.items()},
        )
        return _training_ids(config, tmp_path)

    assert ids(1) == ids(2)  # the default: one subset for every seed
    per_seed = ids(1, subsample_seed="seed")
    assert len(per_seed) == 50 and per_seed != ids(2, subsample_seed="seed")
    assert per_seed == ids(1, subsample_seed=1)  # "seed" is the run's own seed
    # unused, it changes no run id
    default = tiny_config(intermediate=True)
    explicit = tiny_config(intermediate=True, data__subsample_seed=0)
    assert resolve(default).run_name == resolve(explicit).run_name


def _stand_in_config(stand_ins: tuple[Path, Path], feature_cache: Path, **inter: Any):
    data_dir, task_file = stand_ins
    return parse_config(
        {
            "seed": 3,
            "model": {"tiny": {}},
            "intermediate": {"tasks": ["xquad_qnli_multilingual"], **inter},
            "target": {"task": "xquad_qnli"},
            "data": {
                "source": "local",
                "data_dir": str(data_dir),
                "task_files": [str(task_file)],
                "cache_dir": str(feature_cache),
            },
        },
        source="test",
    )


def test_one_cap_covers_all_training_languages(stand_ins, feature_cache, tmp_path):
    """xquad_qnli_multilingual trains on German, Chinese and Arabic: capped at 120, it
    trains on 120 pairs drawn from all three, as many as a capped English task."""
    whole = _stand_in_config(stand_ins, feature_cache)
    assert len(_training_ids(whole, tmp_path)) == 3 * 786
    capped = _stand_in_config(stand_ins, feature_cache, training={"max_train_examples": 120})
    experiment = resolve(capped)
    runner = _Runner(experiment, tmp_path / "run", None, {})
    assert experiment.config.intermediate is not None
    split = runner._train_split(experiment.intermediate[0], experiment.config.intermediate.training)
    questions = split.examples["text_a"]
    assert len(questions) == 120
    assert any(re.search(r"[\u4e00-\u9fff]", q) for q in questions)  # Chinese
    assert any(re.search(r"[\u0600-\u06ff]", q) for q in questions)  # Arabic
    assert any(re.fullmatch(r"[\x00-\u024f\s]+", q) for q in questions)  # German


def test_a_step_budget_repeats_a_small_subset(tiny_config, tmp_path):
    """A fixed step budget (the scaling study's 'fixed-steps' scale): 20 examples in
    batches of 8 are 3 steps an epoch, and max_steps 7 trains all 7."""
    training = {"max_train_examples": 20, "batch_size": 8, "max_steps": 7, "eval_every_steps": 7}
    config = tiny_config(intermediate=True, intermediate__training=training)
    folder = run_intermediate_phase(config, tmp_path / "runs")
    result = json.loads((folder / "training.json").read_text())
    assert result["steps"] == result["total_steps"] == 7
    assert "7 steps (2.33 epochs of 3 steps)" in (folder / "train.log").read_text()


def test_adversarial_target_training_covers_the_stages(tiny_config):
    config = tiny_config(
        target__training__adversarial={"method": "freelb"},
        target__stages=[
            {"task": "demo_nli"},
            {"task": "demo_nli", "training": {"adversarial": {"method": "none"}}},
        ],
    )
    first, second = resolve(config).config.target.stages
    assert first.training.adversarial is not None
    assert first.training.adversarial.method == "freelb"
    assert second.training.adversarial is not None
    assert second.training.adversarial.method == "none"  # a stage's own setting wins
    plain = tiny_config(target__stages=[{"task": "demo_nli"}])
    assert resolve(plain).config.target.stages[0].training.adversarial is None
