"""The SQLite results index of a grid."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from xstilts.errors import XstiltsError
from xstilts.experiment import results_db
from xstilts.experiment.results_db import (
    index_run,
    load_table,
    rebuild,
    result_rows,
    run_scores,
    write_csv,
)

XNLI = {"en": 80.0, "de": 70.0, "fr": 72.0}
XQUAD = {"en": (70.0, 80.0), "es": (60.0, 70.0), "ar": (50.0, 64.0), "hi": (40.0, 50.0)}


def _results(grid: Path, tasks: list[str], target: str, seed: int, **extra) -> dict:
    option = "+".join(tasks) or "baseline"
    run_id = f"{option}-{target}-s{seed}"
    bonus = {"baseline": 0.0, "mnli": 5.0}.get(option, 0.0) + seed
    if target == "xnli":
        langs = {
            lg: {"accuracy": v + bonus, "num_examples": 10, "predictions": "p.jsonl"}
            for lg, v in XNLI.items()
        }
        metric, family = "accuracy", "nli"
    else:
        langs = {
            lg: {"exact_match": em + bonus, "f1": f1 + bonus, "num_examples": 5}
            for lg, (em, f1) in XQUAD.items()
        }
        metric, family = "f1", "qa"
    run_dir = grid / "runs" / run_id
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model": "tiny",
        "seed": seed,
        "intermediate_tasks": tasks,
        "intermediate_run": None,
        "target_task": target,
        "task_family": family,
        "benchmarks": ["xtreme"],
        "metric": metric,
        "split": "test",
        "languages": langs,
        "average": None,
        "average_zero_shot": None,
        "english": None,
        "training": None,
        "finished_at": "2025-01-01T00:00:00+00:00",
        **extra,
    }


def _write(payload: dict) -> Path:
    run_dir = Path(payload["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    path = run_dir / "results.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    grid = tmp_path / "my_grid"
    for tasks in ([], ["mnli"], ["qqp"]):
        for target in ("xnli", "xquad"):
            for seed in (1, 2):
                _write(_results(grid, tasks, target, seed))
    return grid


def _key(rows):
    return sorted((r["run_id"], r["language"], r["metric"], r["value"]) for r in rows)


def test_rows_count_and_values(grid: Path):
    assert rebuild(grid) == 12
    rows = load_table(grid)
    # xnli: 3 languages x (accuracy, score); xquad: 4 x (exact_match, f1, score); 6 runs each
    assert len(rows) == 6 * 3 * 2 + 6 * 4 * 3
    assert set(rows[0]) == set(results_db.COLUMNS)
    assert not {r["metric"] for r in rows} & {"num_examples", "predictions"}
    by = {(r["run_id"], r["language"], r["metric"]): r for r in rows}
    hi = by[("mnli-xquad-s2", "hi", "score")]
    assert hi["value"] == pytest.approx(((40 + 7) + (50 + 7)) / 2)
    assert by[("baseline-xnli-s1", "de", "score")]["value"] == 71.0
    assert by[("baseline-xnli-s1", "de", "accuracy")]["value"] == 71.0
    assert hi["intermediate_option"] == "mnli"
    assert hi["intermediate_tasks"] == "mnli"
    assert hi["intermediate_examples"] is None
    assert hi["target_family"] == "qa"
    assert hi["seed"] == 2
    assert hi["results_path"].endswith("mnli-xquad-s2/results.json")
    base = by[("baseline-xnli-s1", "en", "score")]
    assert base["intermediate_option"] == "baseline"
    assert base["intermediate_tasks"] == ""


def test_explicit_option_and_size(tmp_path: Path):
    payload = _results(
        tmp_path,
        ["mnli"],
        "xnli",
        1,
        intermediate_option="nli1k",
        intermediate_max_train_examples=1000,
    )
    rows = result_rows(payload)
    assert {r["intermediate_option"] for r in rows} == {"nli1k"}
    assert {r["intermediate_examples"] for r in rows} == {1000}


def test_index_run_is_idempotent_upsert(tmp_path: Path):
    db = tmp_path / "results.sqlite"
    payload = _results(tmp_path, ["mnli"], "xnli", 1)
    assert index_run(db, payload) == 6
    index_run(db, payload)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 6
    payload["languages"]["en"]["accuracy"] = 99.0
    del payload["languages"]["fr"]
    index_run(db, payload)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT language, metric, value FROM results").fetchall()
    assert len(rows) == 4
    assert ("en", "score", 99.0) in rows


def test_rebuild_after_deleting_db_gives_same_rows(grid: Path):
    first = load_table(grid)  # builds the missing database
    assert (grid / "results.sqlite").is_file()
    (grid / "results.sqlite").unlink()
    assert _key(load_table(grid)) == _key(first)
    assert rebuild(grid) == 12
    assert _key(load_table(grid)) == _key(first)


def test_runs_written_after_a_crash_are_picked_up(grid: Path):
    rows = load_table(grid)
    # a run finished but the writer crashed before indexing it
    _write(_results(grid, ["mnli"], "xnli", 3))
    # a run whose results.json was cut short: one error naming it, until it is dealt with
    broken = grid / "runs" / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"run_id": "bro')
    with pytest.raises(XstiltsError, match=r"broken/results\.json: not valid JSON"):
        load_table(grid)
    shutil.rmtree(broken)
    synced = load_table(grid)
    assert len(synced) == len(rows) + 6
    assert rebuild(grid) == 13
    assert _key(load_table(grid)) == _key(synced)
    assert not list(grid.glob(".results.sqlite*"))


def test_corrupt_db_is_rebuilt(grid: Path):
    (grid / "results.sqlite").write_bytes(b"not a database at all" * 100)
    assert len(load_table(grid)) == 108


def test_write_csv_and_run_scores(grid: Path, tmp_path: Path):
    rows = load_table(grid)
    path = write_csv(rows, tmp_path / "out" / "rows.csv")
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == len(rows)
    assert list(read[0]) == list(results_db.COLUMNS)
    scores = {s["run_id"]: s for s in run_scores(rows)}
    assert len(scores) == 12
    assert scores["baseline-xnli-s1"]["score"] == pytest.approx((81 + 71 + 73) / 3)
    expected = sum((em + f1) / 2 + 1 for em, f1 in XQUAD.values()) / 4
    assert scores["qqp-xquad-s1"]["score"] == pytest.approx(expected)
