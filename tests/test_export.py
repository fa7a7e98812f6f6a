"""`xstilts tasks show` and `xstilts export`: the best run per task in the submission layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REAL_DATA
from xstilts.cli import app
from xstilts.config import parse_config
from xstilts.experiment.export import export_submission
from xstilts.experiment.pipeline import run_experiment
from xstilts.metrics.xtreme import get_benchmark

runner = CliRunner()


def test_tasks_show_lists_sources_and_languages():
    result = runner.invoke(app, ["tasks", "show", "xnli"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "facebook/xnli" in text and "xnli/test-{lang}.tsv" in text
    assert "ar bg de el en es fr hi ru sw th tr ur vi zh" in text
    unknown = runner.invoke(app, ["tasks", "show", "nope"])
    assert unknown.exit_code == 2 and "unknown task 'nope'" in unknown.output


def _fake_run(root: Path, name: str, task: str, best: float | None, finished: str) -> Path:
    run_dir = root / "runs" / name
    folder = run_dir / "predictions" / task
    folder.mkdir(parents=True)
    languages = {}
    for lang in ("de", "fr"):
        path = folder / f"test-{lang}.tsv"
        path.write_text(f"{name}\n")
        languages[lang] = {"accuracy": 50.0, "predictions": str(path)}
    result = {
        "target_task": task,
        "benchmarks": ["xtreme"],
        "split": "test",
        "languages": languages,
        "training": None if best is None else {"best_score": best},
        "finished_at": finished,
    }
    (run_dir / "results.json").write_text(json.dumps(result))
    return run_dir


def test_export_picks_the_best_validation_run_per_task(tmp_path):
    _fake_run(tmp_path, "xnli-a", "xnli", best=80.0, finished="2026-01-01T00:00:00")
    _fake_run(tmp_path, "xnli-b", "xnli", best=82.0, finished="2026-01-01T00:00:00")
    _fake_run(tmp_path, "pawsx-a", "pawsx", best=90.0, finished="2026-01-02T00:00:00")
    _fake_run(tmp_path, "tatoeba-old", "tatoeba", best=None, finished="2026-01-01T00:00:00")
    _fake_run(tmp_path, "tatoeba-new", "tatoeba", best=None, finished="2026-01-03T00:00:00")
    out = tmp_path / "submission"
    selections = {s.task: s for s in export_submission(tmp_path, "xtreme", out)}
    assert selections["xnli"].run_dir.name == "xnli-b"
    assert selections["tatoeba"].run_dir.name == "tatoeba-new"
    assert (out / "xnli" / "test-de.tsv").read_text() == "xnli-b\n"
    assert (out / "pawsx" / "test-fr.tsv").read_text() == "pawsx-a\n"
    chosen = json.loads((out / "selection.json").read_text())
    assert chosen["xnli"]["criterion"] == "english validation"
    assert chosen["tatoeba"]["criterion"].startswith("most recent")


def test_export_of_a_benchmark_without_runs_is_a_clear_error(tmp_path):
    _fake_run(tmp_path, "xnli-a", "xnli", best=80.0, finished="2026-01-01T00:00:00")
    result = runner.invoke(app, ["export", str(tmp_path), "--benchmark", "xtreme-r"])
    assert result.exit_code == 2
    assert "no finished run of a xtreme-r task" in " ".join(result.output.split())


def test_export_a_real_run_through_the_cli(tmp_path, feature_cache):
    config = parse_config(
        {
            "model": {"tiny": {}},
            "target": {"task": "tatoeba"},
            "evaluation": {"languages": ["de", "fr"]},
            "data": {
                "source": "local",
                "data_dir": str(REAL_DATA),
                "cache_dir": str(feature_cache),
            },
        }
    )
    outcome = run_experiment(config, tmp_path / "runs")
    out = tmp_path / "submission"
    result = runner.invoke(app, ["export", str(tmp_path / "runs"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for lang in ("de", "fr"):
        copied = (out / "tatoeba" / f"test-{lang}.tsv").read_text()
        assert (
            copied == (outcome.run_dir / "predictions" / "tatoeba" / f"test-{lang}.tsv").read_text()
        )


def test_exported_predictions_score_the_same_with_xstilts_score(tmp_path, feature_cache):
    config = parse_config(
        {
            "model": {"tiny": {}},
            "target": {"task": "tatoeba"},
            "evaluation": {"languages": ["de", "fr"]},
            "data": {
                "source": "local",
                "data_dir": str(REAL_DATA),
                "cache_dir": str(feature_cache),
            },
        }
    )
    outcome = run_experiment(config, tmp_path / "runs")
    submission = tmp_path / "submission"
    export_submission(tmp_path / "runs", "xtreme", submission)
    labels = tmp_path / "labels" / "tatoeba"
    labels.mkdir(parents=True)
    # The official scorer needs every language of the task: the other 34 stand in
    # with copies of the German predictions.
    for lang in get_benchmark("xtreme").task_languages["tatoeba"]:
        if lang not in ("de", "fr"):
            shutil.copyfile(
                submission / "tatoeba" / "test-de.tsv", submission / "tatoeba" / f"test-{lang}.tsv"
            )
        # line i of the source file translates line i of the English file
        (labels / f"test-{lang}.tsv").write_text("".join(f"{i}\n" for i in range(1000)))
    result = runner.invoke(
        app,
        ["score", "--predictions", str(submission), "--labels", str(tmp_path / "labels"), "--json"],
    )
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)["tatoeba"]
    for lang in ("de", "fr"):
        assert scored["accuracy"][lang] == pytest.approx(
            outcome.results["languages"][lang]["accuracy"], abs=1e-9
        )
    report = runner.invoke(
        app, ["score", "--predictions", str(submission), "--labels", str(tmp_path / "labels")]
    )
    assert report.exit_code == 0 and "tatoeba" in report.stdout
