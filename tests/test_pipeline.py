"""End-to-end runs of the three-phase pipeline on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.kills import kill_after_checkpoint
from xstilts.errors import XstiltsError
from xstilts.experiment import pipeline
from xstilts.experiment.pipeline import run_experiment


def _scores(results: dict) -> dict:
    return {
        "languages": {k: v["accuracy"] for k, v in results["languages"].items()},
        "average": results["average"],
        "training": results["training"],
    }


def test_baseline_and_intermediate_runs_write_the_run_layout(tiny_config, tmp_path):
    baseline = run_experiment(tiny_config(), tmp_path)
    transfer = run_experiment(tiny_config(intermediate=True), tmp_path)

    for outcome in (baseline, transfer):
        run_dir = outcome.run_dir
        assert (run_dir / "config.yaml").is_file()
        assert (run_dir / "run.log").read_text().count("validation score") >= 1
        # runtime.keep results (the default): the scores stay, the target's model goes
        assert not (run_dir / "best").exists() and not (run_dir / "checkpoints").exists()
        results = json.loads((run_dir / "results.json").read_text())
        assert results["target_task"] == "demo_paraphrase"
        assert results["metric"] == "accuracy"
        assert set(results["languages"]) == {"en", "de", "fr"}
        assert results["english"] == {
            "score": results["languages"]["en"]["accuracy"],
            "split": "test",
        }
        values = [v["accuracy"] for v in results["languages"].values()]
        assert results["average"] == pytest.approx(sum(values) / 3)
        for lang in ("en", "de", "fr"):
            # evaluated on 50 examples: beside the record, not in the submission layout
            path = run_dir / "evaluations" / "test-max50" / "demo_paraphrase" / f"test-{lang}.tsv"
            assert results["languages"][lang]["predictions"] == str(path.relative_to(run_dir))
            lines = path.read_text()
            assert lines.splitlines() and set(lines.split()) <= {"0", "1"}
            assert len(lines.splitlines()) == results["languages"][lang]["num_examples"] == 50

    assert json.loads((baseline.run_dir / "results.json").read_text())["intermediate_tasks"] == []
    results = transfer.results
    assert results["intermediate_tasks"] == ["demo_nli"]
    inter_dir = tmp_path / "intermediate" / results["intermediate_run"]
    assert {p.name for p in (inter_dir / "best").iterdir()} == {
        "trained.safetensors",
        "heads.safetensors",
        "heads.json",
        "base.json",
    }
    assert not (inter_dir / "checkpoints").exists()
    assert baseline.run_dir != transfer.run_dir


def test_intermediate_encoder_is_carried_into_the_target_phase(
    tiny_config, tmp_path, encoder_starts
):
    seen = encoder_starts
    outcome = run_experiment(tiny_config(intermediate=True), tmp_path)
    inter_best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    # intermediate starts from the base encoder, target from the intermediate's best,
    # evaluation from the target's best
    assert seen == [None, inter_best, outcome.run_dir / "best"]


def test_finished_run_is_reused_not_retrained(tiny_config, tmp_path, monkeypatch):
    first = run_experiment(tiny_config(), tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished phase must not train again")

    monkeypatch.setattr(pipeline, "train_phase", no_training)
    second = run_experiment(tiny_config(), tmp_path)
    assert _scores(second.results) == _scores(first.results)


def test_crashed_run_resumes_from_its_checkpoint_with_identical_metrics(
    tiny_config, tmp_path, monkeypatch
):
    config = tiny_config(target__training__checkpoint_every_steps=3)
    reference = run_experiment(config, tmp_path / "uninterrupted")

    kill_after_checkpoint(monkeypatch, lambda: run_experiment(config, tmp_path / "interrupted"), 9)
    resumed = run_experiment(config, tmp_path / "interrupted")
    log = (resumed.run_dir / "run.log").read_text()
    assert "from step 9 of 15" in log
    assert _scores(resumed.results) == _scores(reference.results)


def test_early_stopping_keeps_the_best_checkpoint(tiny_config, tmp_path):
    config = tiny_config(
        target__training__learning_rate=1e-9,  # nothing improves after the first validation
        target__training__early_stopping_patience=1,
        target__training__epochs=3,
    )
    outcome = run_experiment(config, tmp_path)
    training = json.loads((outcome.run_dir / "training.json").read_text())
    assert training["stopped_early"] is True
    assert training["steps"] < training["total_steps"]
    assert outcome.results["training"]["best_step"] == training["validation"][0]["step"]


def test_evaluating_other_languages_reuses_the_trained_model(tiny_config, tmp_path, monkeypatch):
    run_experiment(tiny_config(runtime__keep="best"), tmp_path)
    monkeypatch.setattr(pipeline, "train_phase", lambda *a, **k: pytest.fail("retrained"))
    outcome = run_experiment(tiny_config(evaluation__languages=["es"]), tmp_path)
    assert set(outcome.results["languages"]) == {"en", "de", "fr", "es"}  # es added


def test_second_run_reads_tokenised_features_from_the_cache(tiny_config, tmp_path, monkeypatch):
    from xstilts.formats.classification import Classification

    run_experiment(tiny_config(seed=11), tmp_path)

    def no_tokenising(*args, **kwargs):
        raise AssertionError("features must come from the on-disk cache")

    monkeypatch.setattr(Classification, "encode", no_tokenising)
    outcome = run_experiment(tiny_config(seed=12), tmp_path)  # a new run: it trains again
    assert outcome.results["seed"] == 12


def test_gradient_accumulation_takes_one_step_per_accumulated_batch(tiny_config, tmp_path):
    plain = run_experiment(tiny_config(), tmp_path)
    accumulated = run_experiment(
        tiny_config(target__training__gradient_accumulation_steps=2), tmp_path
    )
    # 240 examples, batch_size 16 examples per step: 15 steps of 16, or of 2 x 8
    assert plain.results["training"]["steps"] == 15
    assert accumulated.results["training"]["steps"] == 15
    assert accumulated.run_dir != plain.run_dir
    batches = json.loads((accumulated.run_dir / "training.json").read_text())["batches"]
    assert batches == {
        "demo_paraphrase": {
            "examples_per_step": 16,
            "accumulation": 2,
            "per_process_micro_batch": 8,
        }
    }


def test_a_batch_that_processes_and_micro_batches_cannot_share_is_refused(tiny_config, tmp_path):
    config = tiny_config(
        target__training__batch_size=15, target__training__gradient_accumulation_steps=2
    )
    with pytest.raises(XstiltsError, match=r"target\.training: batch_size 15") as refused:
        run_experiment(config, tmp_path)
    assert "a multiple of 2 (14 or 16)" in str(refused.value)
    assert not list(tmp_path.glob("runs/*/training.json"))  # refused before training


def test_bf16_mixed_precision_runs_on_cpu(tiny_config, tmp_path):
    outcome = run_experiment(tiny_config(runtime={"mixed_precision": "bf16"}), tmp_path)
    assert outcome.results["average"] is not None
    assert "mixed_precision: bf16" in (outcome.run_dir / "config.yaml").read_text()


def test_every_step_clips_the_gradients_of_the_trainable_parameters(
    tiny_config, tmp_path, monkeypatch
):
    # The list of parameters to clip is taken once before the loop: every step must
    # still clip exactly the parameters that train, and leave their norm at the limit.
    from accelerate import Accelerator

    from xstilts.modeling.multitask import MultiTaskModel

    models: list[MultiTaskModel] = []
    init, clip = MultiTaskModel.__init__, Accelerator.clip_grad_norm_
    steps: list[tuple[set[int], float]] = []

    def remembered(self, *args, **kwargs):
        init(self, *args, **kwargs)
        models.append(self)

    def recording(self, parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        norm = clip(self, parameters, max_norm, *args, **kwargs)
        grads = [p.grad.norm() for p in parameters if p.grad is not None]
        steps.append(({id(p) for p in parameters}, float(torch.stack(grads).norm())))
        return norm

    monkeypatch.setattr(MultiTaskModel, "__init__", remembered)
    monkeypatch.setattr(Accelerator, "clip_grad_norm_", recording)
    config = tiny_config(model__freeze_layers=1, target__training__max_grad_norm=1e-3)
    run_experiment(config, tmp_path)
    model = models[0]  # the one trained (evaluation builds its own afterwards)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert 0 < len(trainable) < len(list(model.parameters()))  # a frozen layer is left out
    assert len(steps) == 15
    for clipped, norm in steps:
        assert clipped == trainable and norm <= 1e-3 * 1.0001


def test_training_steps_run_in_train_mode_and_validation_in_eval_mode(
    tiny_config, tmp_path, monkeypatch
):
    # train() is set once and again after each validation, not every step: a step after
    # a validation must still have dropout on.
    from xstilts.modeling.multitask import MultiTaskModel

    calls: list[tuple[bool, bool]] = []
    forward, init = MultiTaskModel.forward, MultiTaskModel.__init__

    def built_in_eval_mode(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.eval()  # as from_pretrained leaves a model; the tiny one is built in train mode

    def recording(self, head, batch):
        calls.append((torch.is_grad_enabled(), self.training))
        return forward(self, head, batch)

    monkeypatch.setattr(MultiTaskModel, "forward", recording)
    monkeypatch.setattr(MultiTaskModel, "__init__", built_in_eval_mode)
    run_experiment(tiny_config(target__training__eval_every_steps=4), tmp_path)
    training = [mode for grad, mode in calls if grad]
    validating = [mode for grad, mode in calls if not grad]
    assert len(training) == 15 and all(training)
    assert validating and not any(validating)
    first_validation = next(i for i, (grad, _) in enumerate(calls) if not grad)
    assert any(grad for grad, _ in calls[first_validation:])  # training went on after it
