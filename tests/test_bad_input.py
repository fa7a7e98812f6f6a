"""Bad input of every class ends with exit status 2 and one sentence that names the file
(and line where there is one) and what was expected, and damages nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.configs import set_keys, write_config
from xstilts.cli import app

runner = CliRunner()


def _config(tmp_path: Path, data: dict, **changes) -> Path:
    config = {
        "seed": 5,
        "model": {"tiny": {}},
        "target": {
            "task": "demo_paraphrase",
            "training": {"batch_size": 16, "max_steps": 4, "max_eval_examples": 32},
        },
        "evaluation": {"languages": ["en", "de"], "max_examples": 20},
        "data": dict(data),
    }
    return write_config(tmp_path / "config.yaml", set_keys(config, changes, "__"))


def _fails(args: list[str], *fragments: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.count("error:") == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\ntarget: {task: xnli}\n".encode("latin-1"))
    _fails(["run", str(path)], str(path), "not UTF-8")


def test_a_data_file_that_is_not_utf8(tmp_path, feature_cache):
    (tmp_path / "t").mkdir()
    rows = '{"text_a": "fine", "label": "0"}\n{"text_a": "caf\xe9", "label": "1"}\n'
    (tmp_path / "t" / "train.jsonl").write_bytes(rows.encode("latin-1"))
    (tmp_path / "t" / "dev.jsonl").write_text('{"text_a": "x", "label": "0"}\n')
    spec = {
        "name": "latin",
        "family": "sentiment",
        "format": "classification",
        "labels": ["0", "1"],
        "splits": {
            "train": {"local": {"path": "t/train.jsonl"}},
            "validation": {"local": {"path": "t/dev.jsonl"}},
        },
    }
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump({"tasks": [spec]}))
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"tiny": {}},
                "target": {"task": "latin", "training": {"max_steps": 1}},
                "evaluation": {"split": "validation"},
                "data": {
                    "source": "local",
                    "data_dir": str(tmp_path),
                    "task_files": [str(tmp_path / "tasks.yaml")],
                    "cache_dir": str(feature_cache),
                },
            }
        )
    )
    _fails(["run", str(config), "--out", str(tmp_path / "out")], "train.jsonl", "not UTF-8")
    assert not list((tmp_path / "out").rglob("checkpoints"))


def test_a_task_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_bytes("tasks:\n  - name: caf\xe9\n".encode("latin-1"))
    _fails(["tasks", "--file", str(path)], str(path), "not UTF-8")


def test_a_row_missing_a_mapped_column(tmp_path, demo_data_section):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.jsonl").write_text(
        '{"premise": "a", "hypothesis": "b", "label": "0"}\n{"premise": "c", "label": "1"}\n'
    )
    columns = {"text_a": "premise", "text_b": "hypothesis"}
    spec = {
        "name": "gappy",
        "family": "nli",
        "format": "classification",
        "labels": ["0", "1"],
        "splits": {
            "train": {"local": {"path": "t/train.jsonl", "columns": columns}},
            "validation": {"local": {"path": "t/train.jsonl", "columns": columns}},
        },
    }
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump({"tasks": [spec]}))
    config = _config(
        tmp_path,
        demo_data_section,
        target__task="gappy",
        evaluation__split="validation",
        evaluation__languages=["en"],
        data__data_dir=str(tmp_path),
        data__task_files=[str(tmp_path / "tasks.yaml")],
    )
    _fails(["run", str(config), "--out", str(tmp_path / "out")], "train.jsonl:2", "hypothesis")


@pytest.mark.parametrize("kind", ["missing", "empty", "no tokenizer"])
def test_model_name_pointing_at_a_bad_folder(tmp_path, demo_data_section, kind):
    folder = tmp_path / "model"
    if kind != "missing":
        folder.mkdir()
    if kind == "no tokenizer":
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    config = _config(tmp_path, demo_data_section, model={"name": str(folder)})
    _fails(["run", str(config), "--out", str(tmp_path / "out")], "model.name", str(folder))


def test_data_dir_that_does_not_exist_or_is_a_file(tmp_path, demo_data_section):
    for bad in (tmp_path / "nowhere", tmp_path / "a-file"):
        if bad.name == "a-file":
            bad.write_text("x")
        config = _config(tmp_path, demo_data_section, data__data_dir=str(bad))
        _fails(["run", str(config), "--out", str(tmp_path / "out")], "data.data_dir", str(bad))


def test_out_pointing_at_a_file(tmp_path, demo_data_section):
    config = _config(tmp_path, demo_data_section)
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    _fails(["run", str(config), "--out", str(target)], "--out", str(target), "not a folder")
    assert target.read_text() == "not a folder"


def test_results_rebuild_on_a_missing_folder(tmp_path):
    _fails(["results", "rebuild", str(tmp_path / "nowhere")], str(tmp_path / "nowhere"))


def test_max_parallel_below_one(tmp_path, demo_data_section):
    grid = {"grid": {"seeds": [1], "targets": ["demo_paraphrase"]}}
    path = _config(tmp_path, demo_data_section)
    base = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**grid, "base": base}))
    for value in ("0", "-2"):
        _fails(["run", str(path), "--max-parallel", value], "--max-parallel", "at least 1")


# -- damaged run folders ---------------------------------------------------------------


def _trained_run(tmp_path, demo_data_section) -> tuple[Path, Path]:
    config = _config(
        tmp_path,
        demo_data_section,
        target__training__checkpoint_every_steps=2,
        runtime__keep="all",  # its model and checkpoint stay, to be damaged
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (out / "runs").iterdir()
    return config, run_dir


@pytest.mark.parametrize(
    "damaged", ["checkpoints/last/model.safetensors", "checkpoints/last/state.json"]
)
def test_a_damaged_checkpoint_names_the_file_and_offers_a_restart(
    tmp_path, demo_data_section, damaged
):
    config, run_dir = _trained_run(tmp_path, demo_data_section)
    (run_dir / "training.json").unlink()  # as if killed before the phase finished
    path = run_dir / damaged
    path.write_bytes(path.read_bytes()[:40])
    out = str(run_dir.parents[1])
    _fails(["run", str(config), "--out", out], str(path), "--restart-phase target")
    result = runner.invoke(app, ["run", str(config), "--out", out, "--restart-phase", "target"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "training.json").read_text())["steps"] == 4


def test_a_damaged_best_model_names_the_file(tmp_path, demo_data_section):
    config, run_dir = _trained_run(tmp_path, demo_data_section)
    heads = run_dir / "best" / "heads.safetensors"
    heads.write_bytes(b"\x00" * 10)
    out = str(run_dir.parents[1])
    changed = yaml.safe_load(config.read_text())
    changed["evaluation"]["languages"] = ["fr"]  # something to evaluate again
    config.write_text(yaml.safe_dump(changed))
    _fails(["run", str(config), "--out", out], str(heads), "--restart-phase target")


def test_a_truncated_results_file(tmp_path, demo_data_section):
    _, run_dir = _trained_run(tmp_path, demo_data_section)
    results = run_dir / "results.json"
    results.write_text(results.read_text()[:30])
    _fails(["results", str(run_dir.parents[1])], str(results), "not valid JSON")


HEAVY = ("torch", "transformers", "datasets")
CHECK_IMPORTS = """
import sys
from xstilts.cli import app
sys.argv = ["xstilts", "run", sys.argv[1], "--dry-run"]
try:
    app()
except SystemExit as done:
    status = done.code
print(status, sorted(set(HEAVY) & set(sys.modules)))
"""


def test_checking_a_bad_config_imports_no_heavy_library(tmp_path):
    """What makes a config check slow is importing torch, transformers or datasets
    (seconds); a bad config must be answered before any of them is imported."""
    path = tmp_path / "bad.yaml"
    path.write_text("target: {task: xnli, training: {learning_rate: -1}}\n")
    script = f"HEAVY = {HEAVY!r}\n{CHECK_IMPORTS}"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[-2] == "2 []", done.stdout + done.stderr
