"""Target stages (``target.stages``): English fine-tuning between the intermediate phase
and the target task, as XTREME-R trains XCOPA on SIQA first and retrieves Tatoeba with
the SQuAD-tuned encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from configs import set_keys
from xstilts.config import parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment import pipeline, run_folder
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.resolve import resolve
from xstilts.modeling import HEADS_FILE

STEPS = {"max_steps": 3, "eval_every_steps": 3, "max_train_examples": 48, "batch_size": 16}


def test_a_stage_trains_between_the_intermediate_phase_and_the_target(
    tiny_config, tmp_path: Path, encoder_starts: list[Path | None]
) -> None:
    config = tiny_config(
        intermediate=True,
        intermediate__training=STEPS,
        target__training=STEPS,
        target__stages=[{"task": "demo_nli", "training": STEPS}],
        evaluation__languages=["en", "de"],
    )
    outcome = run_experiment(config, tmp_path)
    inter_dir = tmp_path / "intermediate" / resolve(config).intermediate_name
    stage_dir = outcome.run_dir / "stages" / "1-demo_nli"
    assert encoder_starts == [
        None,  # the intermediate phase, from the pretrained encoder
        inter_dir / "best",  # the stage, from the intermediate encoder
        stage_dir / "best",  # the target, from the stage's encoder
        outcome.run_dir / "best",  # evaluation, from the target's best model
    ]
    assert (stage_dir / "training.json").is_file()
    assert "target stage 1-demo_nli" in (outcome.run_dir / "run.log").read_text()
    assert outcome.results["target_stages"] == ["demo_nli"]

    trained_at = (stage_dir / "training.json").stat().st_mtime_ns
    encoder_starts.clear()
    run_experiment(config, tmp_path)  # everything finished: nothing retrains
    assert encoder_starts == []
    assert (stage_dir / "training.json").stat().st_mtime_ns == trained_at

    run_folder.restart("target", outcome.run_dir, inter_dir)
    assert not (outcome.run_dir / "stages").exists()


def test_carry_head_starts_the_target_head_from_the_stage_head(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting_heads: dict[str, dict[str, torch.Tensor]] = {}
    real = pipeline.train_phase

    def recording(model, tasks, training, **kwargs: Any):
        heads = {k: v.detach().clone() for k, v in model.heads.state_dict().items()}
        starting_heads[kwargs["phase_dir"].name] = heads
        return real(model, tasks, training, **kwargs)

    monkeypatch.setattr(pipeline, "train_phase", recording)
    stage = {"task": "demo_paraphrase", "training": STEPS, "carry_head": True}
    config = tiny_config(target__training=STEPS, target__stages=[stage], runtime__keep="best")
    outcome = run_experiment(config, tmp_path)

    stage_head = load_file(str(outcome.run_dir / "stages/1-demo_paraphrase/best" / HEADS_FILE))
    target_start = starting_heads[outcome.run_dir.name]
    assert target_start.keys() == stage_head.keys()
    for key, value in stage_head.items():
        assert torch.equal(target_start[key], value), key
    # and the stage itself started from a fresh head, not from some earlier one
    assert any(
        not torch.equal(starting_heads["1-demo_paraphrase"][k], v) for k, v in stage_head.items()
    )


def test_a_stage_feeds_a_zero_shot_retrieval_target(
    stand_ins: tuple[Path, Path], feature_cache: Path, tmp_path: Path, encoder_starts
) -> None:
    data_dir, task_file = stand_ins
    payload = {
        "seed": 3,
        "model": {"tiny": {}},
        "target": {
            "task": "tatoeba",
            "stages": [{"task": "ud_pos", "training": {**STEPS, "epochs": 1}}],
        },
        "evaluation": {"languages": ["de"], "max_examples": 40},
        "data": {
            "source": "local",
            "data_dir": str(data_dir),
            "task_files": [str(task_file)],
            "cache_dir": str(feature_cache),
        },
    }
    outcome = run_experiment(parse_config(payload, source="test"), tmp_path)
    stage_best = outcome.run_dir / "stages" / "1-ud_pos" / "best"
    assert encoder_starts == [None, stage_best]  # the stage, then retrieval from its encoder
    assert outcome.results["languages"]["de"]["accuracy"] >= 0
    assert not (outcome.run_dir / "best").exists()  # the target itself trains nothing


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"target__stages": [{"task": "tatoeba"}]},
            r"target.stages\[0\].task: 'tatoeba' \(format retrieval\) trains nothing",
        ),
        (
            {"target__stages": [{"task": "demo_nli", "carry_head": True}]},
            r"target.stages\[0\].carry_head: 'demo_nli' .* cannot hand its head to "
            r"'demo_paraphrase'",
        ),
        (
            {"target__stages": [{"task": "demo_nli"}], "target__adapters": {"kind": "seq_bn"}},
            r"target.stages\[0\]: stages fine-tune the whole encoder and cannot be combined "
            "with adapters",
        ),
        (
            {"target__stages": [{"task": "no_such_task"}]},
            r"target.stages\[0\].task: unknown task 'no_such_task'",
        ),
    ],
)
def test_bad_stages_are_refused_before_any_work(
    tiny_config, changes: dict[str, Any], message: str
) -> None:
    config = tiny_config()
    payload = set_keys(config.model_dump(mode="json", exclude_none=True), changes, "__")
    with pytest.raises(XstiltsError, match=message):
        resolve(parse_config(payload, source="test"))
