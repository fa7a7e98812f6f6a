"""The command line: listing tasks, and one clear error (exit 2) per kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.configs import set_keys, write_config
from xstilts.cli import app

runner = CliRunner()


def _write_config(tmp_path: Path, demo_data: tuple[Path, Path], feature_cache: Path, **changes):
    data_dir, task_file = demo_data
    config = {
        "model": {"tiny": {}},
        "target": {
            "task": "demo_paraphrase",
            "training": {"batch_size": 16, "max_train_examples": 64, "max_eval_examples": 32},
        },
        "evaluation": {"languages": ["en", "de"], "max_examples": 20},
        "data": {
            "source": "local",
            "data_dir": str(data_dir),
            "task_files": [str(task_file)],
            "cache_dir": str(feature_cache),
        },
    }
    return write_config(tmp_path / "config.yaml", set_keys(config, changes, "."))


def _run(config: Path, out: Path, *extra: str):
    return runner.invoke(app, ["run", str(config), "--out", str(out), *extra])


def test_tasks_json_lists_the_spine_tasks():
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    specs = {s["name"]: s for s in json.loads(result.stdout)}
    expected = {
        "mnli",
        "qqp",
        "sst2",
        "anli_plus",
        "hellaswag",
        "cosmosqa",
        "commonsenseqa",
        "xnli",
        "pawsx",
        "xcopa",
    }
    assert expected <= set(specs)
    assert specs["xnli"]["format"] == "classification"
    assert specs["hellaswag"]["format"] == "multiple_choice"
    assert specs["pawsx"]["languages"] == ["de", "en", "es", "fr", "ja", "ko", "zh"]
    for spec in specs.values():
        assert {"name", "family", "format", "metric", "languages"} <= set(spec)


def test_tasks_table_includes_user_task_files(demo_data):
    _, task_file = demo_data
    result = runner.invoke(app, ["tasks", "--file", str(task_file)])
    assert result.exit_code == 0, result.output
    assert "demo_paraphrase" in result.stdout and "xnli" in result.stdout


def test_help_on_every_command():
    for command in (["--help"], ["run", "--help"], ["demo", "--help"], ["tasks", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0
        assert "Usage" in result.output


@pytest.mark.parametrize(
    ("changes", "overrides", "expected"),
    [
        ({"target.trainng": {}}, [], ["unknown key 'target.trainng'", "training"]),
        (
            {"target.training.learning_rate": "fast"},
            [],
            ["target.training.learning_rate", '"fast"'],
        ),
        ({}, ["seed=abc"], ["'seed'", '"abc"']),
        ({"target.task": "xnlii"}, [], ["target.task", "unknown task 'xnlii'"]),
        ({"evaluation.languages": ["en", "xx"]}, [], ["evaluation.languages", "xx"]),
    ],
)
def test_bad_config_values_get_one_clear_error(
    tmp_path, demo_data, feature_cache, changes, overrides, expected
):
    config = _write_config(tmp_path, demo_data, feature_cache, **changes)
    sets = [arg for item in overrides for arg in ("--set", item)]
    result = _run(config, tmp_path / "out", *sets)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    for fragment in expected:
        assert fragment in message
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "runs").exists() or not list(
        (tmp_path / "out").rglob("checkpoints")
    )


def _user_task(tmp_path: Path, files: dict[str, str]) -> Path:
    """A user task whose local files are given as text."""
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    spec = {
        "name": "mytask",
        "family": "paraphrase",
        "format": "classification",
        "labels": ["no", "yes"],
        "languages": ["en", "de"],
        "splits": {
            split: {"local": {"path": f"{split}-{{lang}}.tsv"}}
            for split in ("train", "validation", "test")
        },
    }
    path = tmp_path / "mytask.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


GOOD = "text_a\ttext_b\tlabel\na b\tc d\tyes\ne f\tg h\tno\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"train-en.tsv": GOOD, "validation-en.tsv": GOOD, "test-en.tsv": GOOD},
            ["data file not found", "test-de.tsv"],
        ),
        (
            {
                "train-en.tsv": GOOD + "i j\tk l\tmaybe\n",
                "validation-en.tsv": GOOD,
                "test-en.tsv": GOOD,
                "test-de.tsv": GOOD,
            },
            ["train-en.tsv:4", "'maybe'", "no, yes"],
        ),
        (
            {
                "train-en.tsv": GOOD,
                "validation-en.tsv": "text_a\ttext_b\tlabel\n",
                "test-en.tsv": GOOD,
                "test-de.tsv": GOOD,
            },
            ["split 'validation'", "is empty", "validation-en.tsv"],
        ),
    ],
    ids=["missing-file", "bad-label", "empty-split"],
)
def test_bad_data_is_reported_before_training(tmp_path, demo_data, feature_cache, files, expected):
    task_file = _user_task(tmp_path, files)
    config = _write_config(
        tmp_path,
        demo_data,
        feature_cache,
        **{
            "target.task": "mytask",
            "data.task_files": [str(task_file)],
            "data.data_dir": str(tmp_path),
        },
    )
    result = _run(config, tmp_path / "out")
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    for fragment in expected:
        assert fragment in message
    assert not list((tmp_path / "out").rglob("checkpoints")), "no training may start"
