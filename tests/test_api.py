"""The Python API (xstilts.run, run_grid, results, write_report, select) and its example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import xstilts
from tests.configs import write_config
from xstilts.cli import app

ROOT = Path(__file__).resolve().parents[1]
QUIET = Console(quiet=True)
TRAINING = {
    "learning_rate": 1e-3,
    "batch_size": 16,
    "epochs": 1,
    "max_train_examples": 64,
    "max_eval_examples": 32,
}
SMALL = {**TRAINING, "max_train_examples": 32}


def _experiment(data_section: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": 7,
        "model": {"tiny": {}},
        "target": {"task": "demo_paraphrase", "training": dict(TRAINING)},
        "evaluation": {"languages": ["en", "de", "fr"], "max_examples": 30},
        "data": data_section,
    }


def _results_file(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def test_importing_xstilts_loads_neither_torch_nor_the_api() -> None:
    code = (
        "import sys, xstilts\n"
        "assert 'xstilts.api' not in sys.modules\n"
        "assert callable(xstilts.run) and callable(xstilts.write_report)\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {"run", "run_grid", "results", "write_report", "select"} <= set(dir(xstilts))


def test_the_package_exports_what_the_api_exports() -> None:
    # Written out twice (the package cannot import the API to reuse its list).
    import xstilts.api

    assert set(xstilts.__all__) - {"__version__"} == set(xstilts.api.__all__)


def test_run_an_experiment_config_object(tiny_config, tmp_path) -> None:
    config = tiny_config(intermediate=True)
    result = xstilts.run(config, out=tmp_path)
    on_disk = _results_file(result.run_dir)
    assert result.run_dir.parent == tmp_path / "runs"
    assert result.metric == on_disk["metric"] == "accuracy"
    assert set(result.scores) == {"en", "de", "fr"}
    for lang, score in result.scores.items():
        assert score == on_disk["languages"][lang]["accuracy"]
        assert 0.0 <= score <= 100.0
        assert result.metrics[lang]["accuracy"] == score
    assert result.average == pytest.approx(sum(result.scores.values()) / 3)
    assert result.average_zero_shot == on_disk["average_zero_shot"]
    assert result.intermediate_dir == tmp_path / "intermediate" / on_disk["intermediate_run"]
    assert (result.intermediate_dir / "best").is_dir()
    assert result.language_adapter_dirs == {}
    with pytest.raises(AttributeError):
        result.metric = "f1"  # type: ignore[misc]


def test_overrides_as_a_list_or_a_mapping_run_the_same_experiment(
    demo_data_section, tmp_path
) -> None:
    config = write_config(tmp_path / "config.yaml", _experiment(demo_data_section))
    out = tmp_path / "out"
    from_file = xstilts.run(config, out, overrides=["seed=3", "evaluation.languages=[en, de]"])
    assert from_file.results["seed"] == 3
    assert set(from_file.scores) == {"en", "de"}
    # the same experiment from a mapping and a mapping of overrides: the finished run
    overrides = {"seed": 3, "evaluation.languages": ["en", "de"]}
    payload = _experiment(demo_data_section)
    from_mapping = xstilts.run(payload, str(out), overrides=overrides)
    assert from_mapping.run_dir == from_file.run_dir
    assert from_mapping.scores == from_file.scores
    assert payload["seed"] == 7  # the caller's mapping is left as it was


def test_a_grid_config_and_an_experiment_config_are_each_told_where_they_go(
    demo_data_section, tmp_path
) -> None:
    grid = {"grid": {"intermediate": {"baseline": None}, "targets": ["demo_paraphrase"]}}
    with pytest.raises(xstilts.XstiltsError, match=r"grid config .* xstilts\.run_grid"):
        xstilts.run(grid, tmp_path)
    with pytest.raises(xstilts.XstiltsError, match=r"not a grid config .* xstilts\.run"):
        xstilts.run_grid(_experiment(demo_data_section), tmp_path, console=QUIET)


def _cli_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split()).removeprefix("error: ")


@pytest.mark.parametrize(
    ("changes", "overrides"),
    [
        ({"target": {"task": "demo_paraphrase", "trainng": {}}}, []),
        ({"seed": "abc"}, []),
        ({}, ["evaluation.languages=[en, xx]"]),
        ({}, ["seed"]),
        ({}, ["seed.value=1"]),
    ],
)
def test_bad_input_is_the_error_the_command_prints(
    demo_data_section, tmp_path, changes, overrides
) -> None:
    config = write_config(tmp_path / "bad.yaml", {**_experiment(demo_data_section), **changes})
    out = tmp_path / "out"
    sets = [arg for item in overrides for arg in ("--set", item)]
    expected = _cli_error(["run", str(config), "--out", str(out), *sets])
    with pytest.raises(xstilts.XstiltsError) as raised:
        xstilts.run(config, out, overrides=overrides)
    assert " ".join(str(raised.value).split()) == expected


def test_a_bad_report_correction_is_the_error_the_command_prints(tmp_path) -> None:
    expected = _cli_error(["report", str(tmp_path), "--correction", "bonferroni"])
    with pytest.raises(xstilts.XstiltsError) as raised:
        xstilts.write_report(tmp_path, correction="bonferroni")
    assert str(raised.value) == expected
    with pytest.raises(xstilts.XstiltsError, match="no grid folder at"):
        xstilts.results(tmp_path / "nowhere")


# -- a grid -----------------------------------------------------------------------------


def _grid(data_section: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "api-grid",
        "grid": {
            "seeds": [1],
            "intermediate": {
                "baseline": None,
                "nli": {"tasks": ["demo_nli"], "training": TRAINING},
                "nli-small": {
                    "tasks": ["demo_nli"],
                    "training": {**TRAINING, "max_train_examples": 32},
                },
            },
            "targets": ["demo_paraphrase"],
        },
        "base": {
            "model": {"tiny": {}},
            "target": {"training": TRAINING},
            "evaluation": {"languages": ["en", "de"], "max_examples": 30},
            "data": data_section,
        },
    }


@pytest.fixture(scope="module")
def grid_run(demo_data, feature_cache, tmp_path_factory) -> tuple[xstilts.GridResult, dict]:
    data_dir, task_file = demo_data
    section = {
        "source": "local",
        "data_dir": str(data_dir),
        "task_files": [str(task_file)],
        "cache_dir": str(feature_cache),
    }
    out = tmp_path_factory.mktemp("api-grid")
    payload = _grid(section)
    return xstilts.run_grid(payload, out, console=QUIET), payload


def test_run_grid_runs_every_planned_run(grid_run) -> None:
    result, payload = grid_run
    assert result.ok and result.failed == () and result.check() is result
    assert sorted(job.name for job in result.jobs) == sorted(run.name for run in result.planned)
    assert [run.kind for run in result.planned].count("target") == 3
    targets = [job for job in result.jobs if job.results]
    assert sorted(job.results["intermediate_option"] for job in targets) == [
        "baseline",
        "nli",
        "nli-small",
    ]
    # again, and as a dry run: every run is finished, nothing runs
    again = xstilts.run_grid(
        payload, result.grid_dir, overrides=["grid.max_parallel=2"], console=QUIET
    )
    assert again.jobs == () and all(run.finished for run in again.planned)
    dry = xstilts.run_grid(payload, result.grid_dir, dry_run=True, console=QUIET)
    assert dry.jobs == () and len(dry.planned) == len(result.planned)
    # budget mode: the top option by size (nli: 64 examples) and the baseline
    budget = {"selection": {"method": "size", "top_k": 1}}
    narrowed = xstilts.run_grid(payload, result.grid_dir, overrides=budget, console=QUIET)
    assert sorted(run.option for run in narrowed.planned if run.kind == "target") == [
        "baseline",
        "nli",
    ]
    assert [run.option for run in narrowed.planned if run.kind == "intermediate"] == ["nli"]


def test_results_is_the_long_table_of_the_csv(grid_run, tmp_path) -> None:
    result, _ = grid_run
    frame = xstilts.results(result.grid_dir)
    # the settings that vary: the intermediate options' training examples
    assert list(frame.columns) == [
        "option",
        "intermediate_tasks",
        "target",
        "seed",
        "language",
        "metric",
        "value",
        "intermediate_examples",
        "run_id",
    ]
    scores = xstilts.results(result.grid_dir, metric="score")
    assert len(scores) == 3 * 2  # runs x languages
    assert set(scores["metric"]) == {"score"}
    for job in (job for job in result.jobs if job.results):
        mine = scores[scores["run_id"] == job.name].set_index("language")["value"]
        languages = job.results["languages"]
        assert mine.to_dict() == {lang: languages[lang]["accuracy"] for lang in languages}
    assert set(frame["intermediate_tasks"]) == {"", "demo_nli"}
    # the same rows as xstilts results --csv
    csv = tmp_path / "results.csv"
    done = CliRunner().invoke(app, ["results", str(result.grid_dir), "--csv", str(csv)])
    assert done.exit_code == 0, done.output
    exported = pd.read_csv(csv, keep_default_na=False)
    assert len(exported) == len(frame)
    assert sorted(exported["value"]) == pytest.approx(sorted(frame["value"]))
    assert result.results(metric="score").equals(scores)


def test_write_report_returns_the_files_it_wrote(grid_run, tmp_path) -> None:
    result, _ = grid_run
    written = xstilts.write_report(result.grid_dir, out=tmp_path / "report", correction="bh")
    assert written and all(path.is_file() for path in written)
    assert {path.suffix for path in written} >= {".md", ".csv", ".html"}
    with pytest.raises(xstilts.XstiltsError, match="unknown target 'xnli'"):
        xstilts.write_report(result.grid_dir, out=tmp_path / "other", target="xnli")


def test_select_returns_the_rankings(grid_run) -> None:
    result, payload = grid_run
    selection = xstilts.select(
        payload, result.grid_dir, methods="size", evaluate=True, console=QUIET
    )
    (ranking,) = selection.rankings["size"]
    assert ranking is selection.ranking("size", "demo_paraphrase")
    sizes = {item.option: item.estimate.value for item in ranking.ranked}
    assert sizes == {"baseline": 0.0, "nli": 64.0, "nli-small": 32.0}
    assert [item.option for item in ranking.ranked] == ["nli", "nli-small", "baseline"]
    assert selection.evaluation is not None and set(selection.evaluation) == {"size", "random"}
    assert selection.evaluation_file is not None
    assert json.loads(selection.evaluation_file.read_text()) == selection.evaluation
    with pytest.raises(xstilts.XstiltsError, match="--method magic"):
        xstilts.select(payload, result.grid_dir, methods=["size,magic"], console=QUIET)


# -- the example notebook -----------------------------------------------------------------


def test_the_notebook_example_runs_offline(tmp_path) -> None:
    out = tmp_path / "example"
    env = {**os.environ, "XSTILTS_EXAMPLE_OUT": str(out), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "notebook_api.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy per language" in done.stdout
    # the experiment: scores of four languages, as its results.json has them
    (experiment,) = (out / "runs" / "runs").glob("*/results.json")
    recorded = json.loads(experiment.read_text())
    assert set(recorded["languages"]) == {"en", "de", "fr", "es"}
    assert all("accuracy" in scores for scores in recorded["languages"].values())
    # the grid's DataFrame: one score per run and language, each the run's own
    runs = [json.loads(p.read_text()) for p in (out / "grid" / "runs").glob("*/results.json")]
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(runs) == 4
    assert len(frame) == len(runs) * 4
    for run in runs:
        rows = frame[frame["run_id"] == run["run_id"]]
        assert dict(zip(rows["language"], rows["value"], strict=True)) == pytest.approx(
            {lang: scores["accuracy"] for lang, scores in run["languages"].items()}
        )
    assert any((out / "report").glob("*.html"))
