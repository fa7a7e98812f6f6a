"""evaluation.benchmark: a run evaluates exactly one benchmark's languages of its target,
and its results, the results index, exports and reports say which benchmark they are."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from tests.test_catalog_benchmarks import XTREME, XTREME_40, XTREME_R, XTREME_R_NEW
from xstilts.config import parse_config, semantic_dump
from xstilts.demo.smoke import TASKS_YAML
from xstilts.errors import XstiltsError
from xstilts.experiment import evaluation_records, results_db
from xstilts.experiment.evaluation_records import EvaluationKey
from xstilts.experiment.export import export_submission
from xstilts.experiment.grid import parse_grid, plan_grid
from xstilts.experiment.grid_runner import print_plan
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.resolve import resolve
from xstilts.report.data import grid_scores
from xstilts.tasks.registry import TASK_PATH_ENV

XTREME_TARGETS = list(XTREME)  # xnli pawsx udpos panx xquad mlqa tydiqa bucc2018 tatoeba
XTREME_R_TARGETS = [*XTREME_R, "mewslix", "lareqa"]
# REFERENCE.md section 3 (mewslix); LAReQA's XQuAD-R languages (xstilts.metrics.xtreme).
XTREME_R_LANGUAGES = {
    **XTREME_R,
    "mewslix": ["ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk"],
    "lareqa": ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"],
}


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


def _planned_languages(
    tmp_path: Path, targets: list[str], evaluation: dict[str, Any]
) -> dict[str, list[str]]:
    """Per target, the languages the grid's dry run plans to evaluate."""
    payload = {
        "grid": {"intermediate": {"baseline": None}, "targets": targets, "seeds": [1]},
        "base": {"model": {"tiny": {}}, "evaluation": evaluation},
    }
    grid = parse_grid(payload, "test")
    plan = plan_grid(grid, tmp_path, "test", dry_run=True)
    planned = {run.target: list(run.languages) for run in plan.targets}
    assert set(planned) == set(targets)
    assert {run.benchmark for run in plan.targets} == {evaluation.get("benchmark")}
    console = Console(record=True, width=200)
    print_plan(plan, console)
    union = {lang for langs in planned.values() for lang in langs}
    assert (
        f"evaluation: {len(union)} languages over {len(targets)} targets" in console.export_text()
    )
    return planned


def _planning(**evaluation: Any):
    payload = {"model": {"tiny": {}}, "target": {"task": "xquad"}, "evaluation": evaluation}
    return resolve(parse_config(payload, source="test"), planning=True)


# ---------------------------------------------------------------------------
# What a run evaluates


def test_xtreme_plans_exactly_its_40_languages(tmp_path: Path) -> None:
    planned = _planned_languages(tmp_path, XTREME_TARGETS, {"benchmark": "xtreme"})
    assert planned == XTREME  # per task, REFERENCE.md section 3's list, in its order
    assert {lang for langs in planned.values() for lang in langs} == set(XTREME_40)


def test_xtreme_r_plans_exactly_its_50_languages(tmp_path: Path) -> None:
    planned = _planned_languages(tmp_path, XTREME_R_TARGETS, {"benchmark": "xtreme-r"})
    assert planned == XTREME_R_LANGUAGES
    union = {lang for langs in planned.values() for lang in langs}
    assert len(union) == 50 and union == set(XTREME_40) | set(XTREME_R_NEW)


def test_without_a_benchmark_every_language_of_the_task(tmp_path: Path) -> None:
    planned = _planned_languages(tmp_path, XTREME_TARGETS, {})
    assert planned["xquad"] == XTREME["xquad"] + ["ro"]  # the union of both benchmarks
    assert len({lang for langs in planned.values() for lang in langs}) > 40
    assert _planning().languages_from == "task"


@pytest.mark.parametrize(
    ("target", "benchmark"), [("pawsx", "xtreme-r"), ("bucc2018", "xtreme-r"), ("xcopa", "xtreme")]
)
def test_a_target_outside_the_benchmark_is_an_error(target: str, benchmark: str) -> None:
    payload = {
        "model": {"tiny": {}},
        "target": {"task": target},
        "evaluation": {"benchmark": benchmark},
    }
    with pytest.raises(XstiltsError) as caught:
        resolve(parse_config(payload, source="test"), planning=True)
    message = str(caught.value)
    assert message.startswith("evaluation.benchmark: task ")
    assert f"'{target}' is not part of {benchmark}" in message
    allowed = message.split("allowed targets: ")[1]
    assert "xnli, xquad" in allowed and "\n" not in message


def test_chosen_languages_must_be_the_benchmarks() -> None:
    with pytest.raises(XstiltsError, match=r"evaluation.languages: ro not among xtreme's"):
        _planning(benchmark="xtreme", languages=["de", "ro"])
    chosen = _planning(benchmark="xtreme-r", languages=["de", "ro"])
    assert (chosen.languages, chosen.languages_from) == (["de", "ro"], "evaluation.languages")
    assert chosen.reported_languages == XTREME_R["xquad"]
    full = _planning(benchmark="xtreme")
    assert (full.languages, full.languages_from) == (XTREME["xquad"], "benchmark")


def test_a_benchmark_must_be_one_of_the_two() -> None:
    with pytest.raises(XstiltsError, match=r"key 'evaluation\.benchmark' has value \"xtreme2\""):
        parse_config({"target": {"task": "xquad"}, "evaluation": {"benchmark": "xtreme2"}})


def test_a_stand_in_keeps_its_own_languages(tmp_path: Path) -> None:
    """A target of no benchmark (the CPU-scale stand-ins) stands in for one."""
    payload = {
        "model": {"tiny": {}},
        "target": {"task": "xquad_sentences"},
        "evaluation": {"benchmark": "xtreme"},
        "data": {"source": "samples", "cache_dir": str(tmp_path)},
    }
    stand_in = resolve(parse_config(payload, source="test"), planning=True)
    assert stand_in.languages == ["en", "de", "zh", "ar"]
    assert stand_in.languages_from == "task"


def test_the_key_leaves_run_ids_alone() -> None:
    """Unset it dumps nothing (run ids of existing configs stay), and set it only
    changes what is evaluated, which never changes a run's id."""
    assert "evaluation" not in semantic_dump(parse_config({"target": {"task": "xquad"}}))
    unset, xtreme, null = _planning(), _planning(benchmark="xtreme"), _planning(benchmark=None)
    assert unset.run_name == xtreme.run_name == null.run_name


def test_a_grid_reruns_a_run_summarised_under_another_benchmark(tmp_path: Path) -> None:
    """Finished means: every language scored, and results.json summarised under the
    grid's benchmark (running it again evaluates nothing and rewrites the summary)."""
    key = EvaluationKey("test", None)
    record = {"split": "test", "max_examples": None, "languages": {"en": {}, "de": {}}}
    evaluation_records.save_record(tmp_path, key, record)
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "r"}))  # before the key
    assert evaluation_records.is_complete(tmp_path, key, ["en", "de"])
    assert not evaluation_records.is_complete(tmp_path, key, ["en", "de"], "xtreme")
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "r", "benchmark": "xtreme"}))
    assert evaluation_records.is_complete(tmp_path, key, ["en"], "xtreme")


# ---------------------------------------------------------------------------
# What a run records


@pytest.fixture
def bench_task(demo_data: tuple[Path, Path], tmp_path: Path) -> Path:
    """The demo's paraphrase task as a member of both benchmarks (XTREME: en de;
    XTREME-R: en de fr; every language: en de fr es)."""
    task = copy.deepcopy(TASKS_YAML["tasks"][0])
    task.update(
        name="bench_paraphrase",
        benchmarks=["xtreme", "xtreme-r"],
        benchmark_languages={"xtreme": ["en", "de"], "xtreme-r": ["en", "de", "fr"]},
    )
    path = tmp_path / "bench-task.yaml"
    path.write_text(yaml.safe_dump({"tasks": [task]}))
    return path


def test_results_record_the_benchmark_and_its_averages(tiny_config, bench_task, tmp_path):
    def config(**evaluation: Any):
        return tiny_config(
            target__task="bench_paraphrase",
            data__task_files=[str(bench_task)],
            evaluation={"max_examples": 40, **evaluation},
        )

    every = run_experiment(config(), tmp_path).results
    assert (every["benchmark"], every["languages_from"]) == (None, "task")
    assert list(every["languages"]) == ["en", "de", "fr", "es"]
    accuracy = {lang: values["accuracy"] for lang, values in every["languages"].items()}
    averages = every["benchmark_averages"]
    assert set(averages) == {"xtreme", "xtreme-r"}
    assert averages["xtreme-r"]["languages"] == ["en", "de", "fr"]
    assert averages["xtreme-r"]["metric"] == "accuracy" and averages["xtreme-r"]["missing"] == []
    for name, langs in (("xtreme", ["en", "de"]), ("xtreme-r", ["en", "de", "fr"])):
        mean = sum(accuracy[lang] for lang in langs) / len(langs)
        assert averages[name]["score"] == pytest.approx(mean)
    assert every["validation_score"] == every["training"]["best_score"]

    # The same trained model (evaluation is no part of a run's id), under XTREME:
    xtreme = run_experiment(config(benchmark="xtreme"), tmp_path)
    results = xtreme.results
    assert xtreme.run_dir.name == every["run_id"]
    assert (results["benchmark"], results["languages_from"]) == ("xtreme", "benchmark")
    assert list(results["languages"]) == ["en", "de"]  # fr and es stay in the record only
    assert results["average"] == pytest.approx(averages["xtreme"]["score"])
    assert list(results["benchmark_averages"]) == ["xtreme"]
    on_disk = json.loads((xtreme.run_dir / "results.json").read_text())
    assert on_disk["benchmark"] == "xtreme"
    rows = results_db.result_rows(on_disk)
    assert {row["benchmark"] for row in rows} == {"xtreme"}
    assert {row["language"] for row in rows} == {"en", "de"}

    # A subset of XTREME's languages (in a fresh folder: results.json summarises every
    # language a run's record holds): its average is not the benchmark's.
    subset = config(benchmark="xtreme", languages=["de"])
    subset = run_experiment(subset, tmp_path / "subset").results
    assert subset["benchmark_averages"]["xtreme"]["missing"] == ["en"]
    assert subset["benchmark_averages"]["xtreme"]["score"] is None


def _row(run: str, benchmark: str | None) -> dict[str, Any]:
    return {
        "run_id": run,
        "intermediate_option": "baseline",
        "intermediate_tasks": "",
        "intermediate_examples": None,
        "target": "xquad",
        "seed": 1,
        "language": "de",
        "metric": "score",
        "value": 70.0,
        "benchmark": benchmark,
    }


def test_the_report_refuses_runs_of_different_benchmarks() -> None:
    assert grid_scores([_row("a", "xtreme"), _row("b", "xtreme")], "paper").targets == ["xquad"]
    with pytest.raises(XstiltsError) as caught:
        grid_scores([_row("a", "xtreme"), _row("b", None)], "paper")
    message = str(caught.value)
    assert message.startswith("paper: its runs were evaluated under different evaluation.")
    assert "none (every language), xtreme" in message


def _exported_run(root: Path, name: str, benchmark: str | None) -> None:
    folder = root / "runs" / name / "predictions" / "xquad"
    folder.mkdir(parents=True)
    languages = {}
    for lang in ("de", "ro"):
        (folder / f"test-{lang}.json").write_text("{}")
        languages[lang] = {"f1": 1.0, "predictions": str(folder / f"test-{lang}.json")}
    averages = {"xtreme": {"languages": ["de"], "missing": [], "score": 1.0}}
    results = {
        "target_task": "xquad",
        "benchmarks": ["xtreme", "xtreme-r"],
        "benchmark": benchmark,
        "benchmark_averages": averages,
        "split": "test",
        "languages": languages,
        "training": {"best_score": 80.0},
        "finished_at": "2026-01-01T00:00:00",
    }
    (root / "runs" / name / "results.json").write_text(json.dumps(results))


def test_export_refuses_runs_of_different_benchmarks(tmp_path: Path) -> None:
    _exported_run(tmp_path, "a", None)
    [chosen] = export_submission(tmp_path, "xtreme", tmp_path / "out")
    assert chosen.files == ["test-de.json"]  # XTREME has no Romanian XQuAD
    _exported_run(tmp_path, "b", "xtreme")
    with pytest.raises(XstiltsError, match=r"evaluation.benchmark none \(every language\), xtreme"):
        export_submission(tmp_path, "xtreme", tmp_path / "out2")


def test_export_refuses_runs_of_the_other_benchmark(tmp_path: Path) -> None:
    _exported_run(tmp_path, "a", "xtreme-r")
    with pytest.raises(XstiltsError, match="--benchmark xtreme: the runs found were evaluated"):
        export_submission(tmp_path, "xtreme", tmp_path / "out")


def test_an_index_without_the_benchmark_column_is_rebuilt(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    results = {
        "run_id": "r1",
        "target_task": "xquad",
        "metric": "f1",
        "benchmark": "xtreme",
        "languages": {"de": {"f1": 70.0, "exact_match": 50.0}},
    }
    (run / "results.json").write_text(json.dumps(results))
    old_columns = [c for c in results_db.COLUMNS if c != "benchmark"]
    conn = sqlite3.connect(results_db.db_path_for(tmp_path))
    conn.execute(f"CREATE TABLE results ({', '.join(old_columns)})")
    conn.commit()
    conn.close()
    rows = results_db.load_table(tmp_path, sync_missing=False)
    assert {(row["benchmark"], row["metric"]) for row in rows} == {
        ("xtreme", "f1"),
        ("xtreme", "exact_match"),
        ("xtreme", "score"),
    }
