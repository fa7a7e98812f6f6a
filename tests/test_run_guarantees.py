"""What a run promises: the same config gives the same numbers whatever ran before in the
process; evaluating again never destroys results; a diverging run stops; unlabelled
training rows are dropped or rejected at load time; the logged loss survives a resume."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from tests.kills import kill_after_checkpoint
from xstilts.cli import app
from xstilts.config import parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import run_experiment
from xstilts.formats.classification import Classification
from xstilts.samples import real_samples

runner = CliRunner()


def _training(run_dir):
    return json.loads((run_dir / "training.json").read_text())


# -- 1. results do not depend on what the process loaded before -----------------------


def test_a_target_that_was_also_the_intermediate_task_trains_on_its_own_size(tiny_config, tmp_path):
    config = tiny_config(
        intermediate=True,
        intermediate__tasks=["demo_paraphrase"],
        intermediate__training__max_train_examples=80,
        intermediate__training__max_steps=2,
    )
    outcome = run_experiment(config, tmp_path)
    assert _training(outcome.run_dir)["total_steps"] == 240 // 16  # not 80 // 16


def test_validation_as_evaluation_split_scores_the_whole_split(tiny_config, tmp_path):
    config = tiny_config(
        evaluation__split="validation",
        evaluation__languages=["en"],
        evaluation__max_examples=None,
        target__training__max_eval_examples=24,
    )
    first = run_experiment(config, tmp_path).results
    again = run_experiment(config, tmp_path).results
    assert first["languages"]["en"]["num_examples"] == 300  # not the 24 of training
    assert first["languages"] == again["languages"]


# -- 2. evaluating again adds results, never destroys them -----------------------------


def test_a_partial_evaluation_leaves_the_full_results(tiny_config, tmp_path):
    full = run_experiment(tiny_config(runtime__keep="best"), tmp_path).results
    partial = run_experiment(tiny_config(evaluation__max_examples=5), tmp_path).results
    assert all(scores["num_examples"] == 5 for scores in partial["languages"].values())
    kept = json.loads((tmp_path / "runs" / full["run_id"] / "results.json").read_text())
    assert kept["languages"] == full["languages"]
    assert kept["evaluation"]["max_examples"] == 50


def test_evaluating_fewer_languages_keeps_the_others(tiny_config, tmp_path):
    best = {"runtime__keep": "best"}  # to evaluate more languages later
    full = run_experiment(tiny_config(**best), tmp_path).results
    german = run_experiment(tiny_config(evaluation__languages=["de"], **best), tmp_path).results
    assert german["languages"]["de"] == full["languages"]["de"]
    assert set(german["languages"]) == {"en", "de", "fr"}  # what this run has, in all
    languages = ["en", "de", "fr", "es"]
    more = run_experiment(tiny_config(evaluation__languages=languages, **best), tmp_path)
    assert set(more.results["languages"]) == {"en", "de", "fr", "es"}
    log = (more.run_dir / "run.log").read_text()  # all three runs, one after the other
    assert log.count("evaluating language es") == 1
    assert log.count("evaluating language de") == 1  # the first run's, not again


def test_grids_evaluate_languages_added_later(tmp_path, demo_data_section):
    grid = {
        "grid": {"seeds": [7], "intermediate": {"baseline": None}, "targets": ["demo_paraphrase"]},
        "base": {
            "model": {"tiny": {}},
            "target": {"training": {"max_steps": 2, "batch_size": 16}},
            "evaluation": {"languages": ["en", "de"], "max_examples": 20},
            "data": demo_data_section,
            "runtime": {"keep": "best"},  # to evaluate more languages later
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(grid))
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(path), "--out", str(out)]).exit_code == 0
    result = runner.invoke(
        app, ["run", str(path), "--out", str(out), "--set", "base.evaluation.languages=[en,de,fr]"]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = (out / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["languages"]) == {"en", "de", "fr"}
    assert _training(run_dir)["steps"] == 2  # evaluated again, not trained again


# -- 3. non-finite numbers -------------------------------------------------------------


def test_non_finite_numbers_in_a_config_are_refused():
    for value in (math.inf, math.nan):
        payload = {"target": {"task": "xnli", "training": {"learning_rate": value}}}
        with pytest.raises(XstiltsError, match=r"target\.training\.learning_rate"):
            parse_config(payload)


def test_a_diverging_run_stops_naming_the_step_and_task(tiny_config, tmp_path):
    config = tiny_config(target__training__learning_rate=1e30)
    with pytest.raises(XstiltsError, match=r"step \d+: the loss of task 'demo_paraphrase' is"):
        run_experiment(config, tmp_path)
    assert not any((tmp_path / "runs").glob("*/results.json"))


def test_non_finite_losses_can_be_skipped(tiny_config, tmp_path, monkeypatch):
    real_loss = Classification.loss
    calls = {"n": 0}

    def nan_on_third_call(self, outputs, batch):
        calls["n"] += 1
        loss = real_loss(self, outputs, batch)
        return loss * math.nan if calls["n"] == 3 else loss

    monkeypatch.setattr(Classification, "loss", nan_on_third_call)
    config = tiny_config(target__training__nonfinite_loss="skip")
    outcome = run_experiment(config, tmp_path)
    assert _training(outcome.run_dir)["skipped_steps"] == [3]
    assert (
        "step 3: the loss of task 'demo_paraphrase' is nan; step skipped"
        in (outcome.run_dir / "run.log").read_text()
    )


# -- 4. unlabelled rows in training and validation data ------------------------------


def _tsv_task(tmp_path, train_rows: str, *, drop: list[str] | None = None):
    (tmp_path / "tsv").mkdir()
    header = "sentence1\tsentence2\tlabel\n"
    (tmp_path / "tsv" / "train.tsv").write_text(header + train_rows)
    (tmp_path / "tsv" / "dev.jsonl").write_text(
        '{"sentence1": "a", "sentence2": "b", "label": 1}\n'
        '{"sentence1": "c", "sentence2": "d", "label": null}\n'
    )
    columns = {"text_a": "sentence1", "text_b": "sentence2"}
    train = {"path": "tsv/train.tsv", "columns": columns}
    validation = {"path": "tsv/dev.jsonl", "columns": columns}
    if drop is not None:
        train["drop_labels"] = validation["drop_labels"] = drop
    spec = {
        "name": "pairs",
        "family": "paraphrase",
        "format": "classification",
        "labels": ["0", "1"],
        "splits": {"train": {"local": train}, "validation": {"local": validation}},
    }
    path = tmp_path / "pairs.yaml"
    path.write_text(json.dumps({"tasks": [spec]}))
    return path


def _pairs_config(tiny_config, tmp_path, task_file):
    return tiny_config(
        target__task="pairs",
        target__training__max_steps=2,
        evaluation__split="validation",
        evaluation__languages=["en"],
        data__data_dir=str(tmp_path),
        data__task_files=[str(task_file)],
    )


def test_an_unlabelled_training_row_is_rejected_at_load_time(tiny_config, tmp_path):
    task_file = _tsv_task(tmp_path, "x\ty\t1\nz\tw\t\n")
    with pytest.raises(XstiltsError, match=r"train\.tsv:3: .*no gold label.*drop_labels"):
        run_experiment(_pairs_config(tiny_config, tmp_path, task_file), tmp_path / "runs")


def test_unlabelled_rows_listed_in_drop_labels_are_dropped_and_counted(tiny_config, tmp_path):
    task_file = _tsv_task(tmp_path, "x\ty\t1\nz\tw\t\nu\tv\t0\n", drop=[""])
    outcome = run_experiment(_pairs_config(tiny_config, tmp_path, task_file), tmp_path / "runs")
    assert outcome.results["languages"]["en"]["num_examples"] == 1  # the null label dropped
    log = (outcome.run_dir / "run.log").read_text()
    assert "split 'train', language 'en': dropped 1 examples without a gold label" in log


def test_a_null_validation_label_is_rejected_too(tiny_config, tmp_path):
    task_file = _tsv_task(tmp_path, "x\ty\t1\nu\tv\t0\n")
    with pytest.raises(XstiltsError, match=r"dev\.jsonl:2: .*no gold label"):
        run_experiment(_pairs_config(tiny_config, tmp_path, task_file), tmp_path / "runs")


# -- 5. evaluation.max_examples on retrieval targets ----------------------------------


def test_max_examples_on_tatoeba_scores_that_many_pairs(tmp_path, feature_cache):
    config = parse_config(
        {
            "model": {"tiny": {}},
            "target": {"task": "tatoeba"},
            "evaluation": {"languages": ["de", "fr"], "max_examples": 40},
            "data": {
                "source": "local",
                "data_dir": str(real_samples()),
                "cache_dir": str(feature_cache),
            },
        }
    )
    outcome = run_experiment(config, tmp_path)
    results = outcome.results
    for lang in ("de", "fr"):
        scores = results["languages"][lang]
        assert scores["num_examples"] == 80  # 40 sentences and their 40 translations
        assert 0 <= scores["accuracy"] <= 100
        predictions = outcome.run_dir / scores["predictions"]  # relative to the run
        assert len(predictions.read_text().splitlines()) == 40
    assert results["average"] is not None


# -- 6. the logged training loss after a resume ---------------------------------------


def test_the_logged_loss_is_the_same_after_a_resume(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(target__training__checkpoint_every_steps=4)
    reference = _training(run_experiment(config, tmp_path / "uninterrupted").run_dir)

    kill_after_checkpoint(monkeypatch, lambda: run_experiment(config, tmp_path / "interrupted"), 8)
    resumed = _training(run_experiment(config, tmp_path / "interrupted").run_dir)
    assert resumed["train_loss"] == reference["train_loss"]
    assert len(reference["train_loss"]) >= 3
