"""Grids: planning as a DAG, running through the local executor, resuming, retrying."""

from __future__ import annotations

import json

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from xstilts.cli import app
from xstilts.config import parse_config
from xstilts.experiment.grid import parse_grid, plan_grid
from xstilts.experiment.grid_runner import run_grid
from xstilts.experiment.resolve import resolve

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
XTREME = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"]


def test_nine_by_nine_by_three_plans_27_intermediate_runs(tmp_path):
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg" / "tags.txt").write_text("N\nNP\n")
    grid = parse_grid(
        {
            "grid": {
                "seeds": [1, 2, 3],
                "intermediate": {name: {"tasks": [name]} for name in NINE},
                "targets": XTREME,
            },
            "base": {"data": {"data_dir": str(tmp_path)}},
        },
        "test",
    )
    plan = plan_grid(grid, tmp_path / "out")
    assert len(plan.intermediate) == 27
    assert len(plan.targets) == 243
    assert not any(run.finished for run in plan.runs)
    # every target run depends on the intermediate run of its option and seed
    by_name = {run.name: run for run in plan.intermediate}
    for run in plan.targets:
        [source_name] = run.depends_on
        source = by_name[source_name]
        assert (source.option, source.seed) == (run.option, run.seed)


def test_a_planned_run_reads_back_as_planned_with_a_task_profile(tmp_path):
    """A job's config, read back by the run, resolves to the planned run id and keeps
    the profile's settings (a full dump would mark every key as set by the user)."""
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg" / "tags.txt").write_text("N\nNP\n")
    grid = parse_grid(
        {
            "grid": {
                "seeds": [1],
                "intermediate": {"baseline": None, "mnli": {"tasks": ["mnli"]}},
                "targets": ["xquad", "xnli"],
            },
            "base": {"profile": "xtreme", "data": {"data_dir": str(tmp_path)}},
        },
        "test",
    )
    plan = plan_grid(grid, tmp_path / "out", dry_run=True)
    rates = {"xquad": 3e-5, "xnli": 3e-5}  # XTREME's scripts, not the spec's 1e-5
    for run in plan.targets:
        config = parse_config(yaml.safe_load(run.config_yaml), source=run.name)
        again = resolve(config, planning=True)
        assert again.run_name == run.name
        target = again.config.target
        assert target.training.learning_rate == rates[target.task]


def _grid(demo_data, feature_cache) -> dict:
    data_dir, task_file = demo_data
    training = {
        "learning_rate": 1e-3,
        "batch_size": 16,
        "epochs": 1,
        "max_train_examples": 96,
        "max_eval_examples": 32,
    }
    return {
        "grid": {
            "seeds": [1, 2],
            "intermediate": {
                "baseline": None,
                "nli": {"tasks": ["demo_nli"], "training": training},
                "nli-small": {
                    "tasks": ["demo_nli"],
                    "training": {**training, "max_train_examples": 48},
                },
            },
            "targets": ["demo_paraphrase", "demo_nli"],
            "target_settings": {
                "demo_nli": {"evaluation": {"split": "validation", "languages": None}}
            },
        },
        "base": {
            "model": {"tiny": {}},
            "target": {"training": training},
            "evaluation": {"languages": ["en", "de"], "max_examples": 30},
            "data": {
                "source": "local",
                "data_dir": str(data_dir),
                "task_files": [str(task_file)],
                "cache_dir": str(feature_cache),
            },
        },
    }


def test_a_small_grid_runs_resumes_and_retries(demo_data, feature_cache, tmp_path, monkeypatch):
    from xstilts.experiment import executors

    console = Console(record=True, width=200)
    grid = parse_grid(_grid(demo_data, feature_cache), "test")
    out = tmp_path / "grid"
    plan = plan_grid(grid, out)
    assert (len(plan.intermediate), len(plan.targets)) == (4, 12)

    # one target run fails: the others go on, the failure is reported with its log
    real_execute = executors.execute_job
    broken = plan.targets[5].name

    def failing(job, out_root):
        if job.name == broken:
            return executors.JobResult(job.name, False, job.log_path, error="simulated crash")
        return real_execute(job, out_root)

    monkeypatch.setattr(executors, "execute_job", failing)
    first = run_grid(grid, out, console)
    assert len(first) == 16
    assert [r.name for r in first if not r.ok] == [broken]
    assert f"{broken}: simulated crash" in console.export_text()

    # re-running retries only the failed run
    monkeypatch.setattr(executors, "execute_job", real_execute)
    second = run_grid(grid, out, console)
    assert [r.name for r in second] == [broken] and second[0].ok

    # a finished grid plans nothing and trains nothing
    monkeypatch.setattr(executors, "execute_job", lambda *a: pytest.fail("nothing may run"))
    assert run_grid(grid, out, console) == []
    assert "nothing to run" in console.export_text()

    results = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/results.json"))]
    assert len(results) == 12
    assert {r["intermediate_option"] for r in results} == {"baseline", "nli", "nli-small"}
    assert {r["intermediate_max_train_examples"] for r in results} == {None, 96, 48}
    # the intermediate runs were trained once each and shared by both targets
    assert len(list((out / "intermediate").glob("*/training.json"))) == 4
    assert len({r["intermediate_run"] for r in results if r["intermediate_run"]}) == 4


def test_dry_run_through_the_cli(demo_data, feature_cache, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(demo_data, feature_cache)))
    result = CliRunner().invoke(
        app, ["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "intermediate 4 0 4" in text and "target 12 0 12" in text
    assert not (tmp_path / "out").exists()


def test_grid_errors_name_the_key(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        yaml.safe_dump({"grid": {"intermediate": {"a": None}, "targets": ["xnli"], "seed": [1]}})
    )
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "unknown grid key 'grid.seed'" in " ".join(result.output.split())


def test_the_same_grid_through_the_ray_executor(demo_data, feature_cache, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    for name, value in {
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_AUTH_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    grid = parse_grid(_grid(demo_data, feature_cache), "test")
    grid.grid.ray_address = None
    console = Console(record=True, width=200)
    results = run_grid(grid, tmp_path / "grid", console, executor="ray")
    assert len(results) == 16 and all(r.ok for r in results)
    assert len(list((tmp_path / "grid" / "runs").glob("*/results.json"))) == 12
    assert len(list((tmp_path / "grid" / "intermediate").glob("*/training.json"))) == 4
    assert run_grid(grid, tmp_path / "grid", console, executor="ray") == []
