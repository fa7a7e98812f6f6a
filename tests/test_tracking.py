"""Experiment trackers: what a tiny experiment logs to TensorBoard, W&B (offline) and
MLflow, read back from the files each tracker wrote."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from xstilts.config import TRACKERS, semantic_dump
from xstilts.errors import XstiltsError
from xstilts.experiment.grid import parse_grid, plan_grid
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.resolve import resolve
from xstilts.tracking import TRACKERS_DIR, check_trackers

SMALL = {
    "target__training__max_train_examples": 48,
    "target__training__eval_every_steps": 2,
    "evaluation__languages": ["en", "de"],
    "evaluation__max_examples": 20,
}


def test_unknown_tracker_gets_one_error_naming_the_key_and_the_choices(tiny_config):
    with pytest.raises(XstiltsError) as err:
        tiny_config(runtime__log_with=["tensorbord"])
    message = str(err.value)
    assert "runtime.log_with" in message and "'tensorbord'" in message
    assert "tensorboard, wandb, mlflow" in message


def test_the_allowed_trackers_are_accelerates():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    assert set(TRACKERS) == set(LOGGER_TYPE_TO_CLASS)


def test_a_missing_tracker_package_is_named_before_any_work(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(XstiltsError, match=r"runtime.log_with names wandb.*xstilts\[wandb\]"):
        check_trackers(["wandb"])


def test_trackers_leave_run_ids_alone(tiny_config):
    plain = tiny_config()
    tracked = tiny_config(runtime__log_with=["tensorboard", "wandb"], runtime__project="p")
    assert semantic_dump(plain) == semantic_dump(tracked)
    assert resolve(plain).run_name == resolve(tracked).run_name


def test_tensorboard_gets_config_loss_lr_validation_and_final_scores(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(intermediate=True, runtime__log_with=["tensorboard"], **SMALL)
    outcome = run_experiment(config, tmp_path)
    training = json.loads((outcome.run_dir / "training.json").read_text())
    inter_dir = tmp_path / "intermediate" / outcome.results["intermediate_run"]

    target = EventAccumulator(str(outcome.run_dir / TRACKERS_DIR / "xstilts"))
    target.Reload()
    scalars = {tag: target.Scalars(tag) for tag in target.Tags()["scalars"]}
    assert [e.step for e in scalars["train/loss"]] == [e["step"] for e in training["train_loss"]]
    for event, logged in zip(scalars["train/loss"], training["train_loss"], strict=True):
        assert event.value == pytest.approx(logged["loss"], rel=1e-6)
    lr = [e.value for e in scalars["train/lr"]]
    assert lr[-1] < lr[0]  # the linear schedule decays
    for validation in training["validation"]:
        step = validation["step"]
        assert _at(scalars["validation/score"], step) == pytest.approx(validation["score"])
        accuracy = validation["tasks"]["demo_paraphrase"]["accuracy"]
        assert _at(scalars["validation/demo_paraphrase/accuracy"], step) == pytest.approx(accuracy)
    for lang, scores in outcome.results["languages"].items():
        logged = scalars[f"test/{lang}/accuracy"]
        assert [e.value for e in logged] == [pytest.approx(scores["accuracy"])]
    assert scalars["test/average"][0].value == pytest.approx(outcome.results["average"])

    [hparams] = (outcome.run_dir / TRACKERS_DIR / "xstilts").glob("*/hparams.yml")
    logged_config = yaml.safe_load(hparams.read_text())
    assert logged_config["run_id"] == outcome.run_dir.name
    assert logged_config["phase"] == "target"
    assert logged_config["target.training.learning_rate"] == 1e-3

    # the intermediate phase is its own tracker run, in its own folder
    intermediate = EventAccumulator(str(inter_dir / TRACKERS_DIR / "xstilts"))
    intermediate.Reload()
    tags = intermediate.Tags()["scalars"]
    assert {"train/loss", "train/lr", "validation/demo_nli/accuracy"} <= set(tags)
    assert not any(tag.startswith("test/") for tag in tags)


def test_wandb_offline_run_is_named_grouped_and_complete(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    config = tiny_config(runtime__log_with=["wandb"], grid_name="mygrid", **SMALL)
    outcome = run_experiment(config, tmp_path)

    [log_file] = (outcome.run_dir / TRACKERS_DIR / "wandb").glob("offline-run-*/run-*.wandb")
    run, config_keys, history = _read_wandb(log_file)
    assert run.display_name == outcome.run_dir.name
    assert (run.project, run.run_group, run.job_type) == ("mygrid", "mygrid", "target")
    assert config_keys["target.training.learning_rate"] == 1e-3
    assert config_keys["runtime.log_with"] == '["wandb"]'
    rows = {key: [row[key] for row in history if key in row] for row in history for key in row}
    training = json.loads((outcome.run_dir / "training.json").read_text())
    assert rows["train/loss"] == pytest.approx([e["loss"] for e in training["train_loss"]])
    assert len(rows["train/lr"]) == len(rows["train/loss"])
    assert rows["validation/score"] == pytest.approx([v["score"] for v in training["validation"]])
    for lang, scores in outcome.results["languages"].items():
        assert rows[f"test/{lang}/accuracy"] == [pytest.approx(scores["accuracy"])]


def test_mlflow_logs_into_the_run_folder(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tiny_config(runtime__log_with=["mlflow"], runtime__project="study", **SMALL)
    outcome = run_experiment(config, tmp_path)
    [run] = [
        folder
        for folder in (outcome.run_dir / TRACKERS_DIR / "mlruns").glob("*/*")
        if (folder / "metrics").is_dir()
    ]
    assert (run / "tags" / "mlflow.runName").read_text() == outcome.run_dir.name
    assert (run / "params" / "target.training.learning_rate").read_text() == "0.001"
    accuracy = (run / "metrics" / "test" / "de" / "accuracy").read_text().split()
    assert float(accuracy[1]) == pytest.approx(outcome.results["languages"]["de"]["accuracy"])
    assert (run / "metrics" / "train" / "loss").is_file()


def test_grid_runs_carry_the_grid_name(demo_data, tmp_path):
    data_dir, task_file = demo_data
    payload = {
        "name": "study-a",
        "grid": {"intermediate": {"baseline": None}, "targets": ["demo_paraphrase"]},
        "base": {
            "model": {"tiny": {}},
            "data": {"source": "local", "data_dir": str(data_dir), "task_files": [str(task_file)]},
            "runtime": {"log_with": ["tensorboard"]},
        },
    }
    plan = plan_grid(parse_grid(payload, "grid.yaml"), tmp_path)
    [run] = plan.targets
    assert yaml.safe_load(run.config_yaml)["grid_name"] == "study-a"


def _at(events: list[Any], step: int) -> float:
    [value] = [e.value for e in events if e.step == step]
    return value


# -- reading a W&B offline run ----------------------------------------------------
# A .wandb file is W&B's transaction log: a 7-byte header (":W&B", magic 0xBEE1,
# version), then LevelDB-log blocks of 32 KiB whose chunks (checksum, length, kind)
# carry wandb_internal.proto Record messages; W&B syncs runs from it.


def _read_wandb(path: Path) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    run, config, history = None, {}, []
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            items = record.history.item
            history.append({_key(item): json.loads(item.value_json) for item in items})
    assert run is not None, "no run record"
    return run, config, history


def _key(item: Any) -> str:
    """A history key: plain, or split at its slashes (as W&B stores 'train/loss')."""
    return item.key or "/".join(item.nested_key)


def _wandb_records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    block, data = 32768, path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length, kind) == (0, 0):  # block padding
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record
