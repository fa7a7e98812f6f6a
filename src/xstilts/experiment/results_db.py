"""An SQLite index of a grid's finished runs: ``<grid_dir>/results.sqlite``.

The run folders (``<grid_dir>/runs/<run>/results.json``) stay the source of truth;
the database is a disposable, long-format index of them: one row per
(run, language, metric). Besides the metric values of each language it holds a
derived metric ``score``, the per-language XTREME task score: (EM + F1) / 2 for
QA tasks (main metric ``f1`` with ``exact_match`` present), otherwise the main metric.
``benchmark`` is the run's evaluation.benchmark (NULL: every language of its task).
A database written by an older xstilts (other columns) is rebuilt from the run folders.

Paths (``run_dir``, ``results_path``) are stored relative to the grid folder, and
read back joined to wherever the grid folder is now, so a grid folder can move.

Writes are crash-safe: :func:`index_run` replaces a run's rows in one transaction,
and :func:`rebuild` builds a fresh database next to the old one and swaps it in
with an atomic rename, so a crash leaves either the old or the new index.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError

log = logging.getLogger(__name__)

DB_NAME = "results.sqlite"
SCORE_METRIC = "score"
"""Derived per-language task score: (EM+F1)/2 for QA, else the main metric."""
NOT_METRICS = frozenset({"num_examples", "predictions"})

COLUMNS = (
    "run_id",
    "model",
    "intermediate_option",
    "intermediate_tasks",
    "intermediate_examples",
    "intermediate_train_examples",
    "validation_score",
    "adversarial",
    "adapters",
    "intermediate_trained",
    "target_trained",
    "target",
    "target_family",
    "benchmark",
    "seed",
    "language",
    "metric",
    "value",
    "run_dir",
    "results_path",
    "finished_at",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    model TEXT,
    intermediate_option TEXT NOT NULL,
    intermediate_tasks TEXT NOT NULL,
    intermediate_examples INTEGER,
    intermediate_train_examples INTEGER,
    validation_score REAL,
    adversarial TEXT NOT NULL DEFAULT '',
    adapters TEXT NOT NULL DEFAULT '',
    intermediate_trained INTEGER,
    target_trained INTEGER,
    target TEXT NOT NULL,
    target_family TEXT,
    benchmark TEXT,
    seed INTEGER,
    language TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    run_dir TEXT,
    results_path TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, language, metric)
);
CREATE INDEX IF NOT EXISTS results_target ON results (target, intermediate_option);
"""


def db_path_for(grid_dir: Path | str) -> Path:
    return Path(grid_dir) / DB_NAME


def intermediate_option(results: dict[str, Any]) -> str:
    """The grid's label for the intermediate choice, derived when absent."""
    option = results.get("intermediate_option")
    if option:
        return str(option)
    return "+".join(results.get("intermediate_tasks") or []) or "baseline"


def language_score(values: dict[str, Any], main_metric: str) -> float | None:
    """The XTREME score of one language: (EM+F1)/2 for QA, else the main metric."""
    if main_metric == "f1" and _number(values.get("exact_match")) is not None:
        f1 = _number(values.get("f1"))
        return None if f1 is None else (f1 + values["exact_match"]) / 2
    return _number(values.get(main_metric))


def _validation_score(results: dict[str, Any]) -> float | None:
    """The run's validation score (model selection without test): ``validation_score``
    (target training's best English validation score, or BUCC's mean dev F1), else,
    in results written before that key, target training's best score."""
    if "validation_score" in results:
        return _number(results["validation_score"])
    training = results.get("training") or {}
    return _number(training.get("best_score"))


def _trained(results: dict[str, Any], phase: str) -> int | None:
    """Parameters the run's ``phase`` trained (results.json 'parameters'), if recorded."""
    counts = (results.get("parameters") or {}).get(phase) or {}
    trained = counts.get("trained")
    return int(trained) if isinstance(trained, int) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def result_rows(results: dict[str, Any], results_path: Path | str | None = None) -> list[dict]:
    """The long-format rows of one run's ``results.json`` payload."""
    run_dir = results.get("run_dir")
    if results_path is None and run_dir:
        results_path = Path(run_dir) / "results.json"
    examples = results.get("intermediate_max_train_examples")
    common = {
        "run_id": results["run_id"],
        "model": results.get("model"),
        "intermediate_option": intermediate_option(results),
        "intermediate_tasks": "+".join(results.get("intermediate_tasks") or []),
        "intermediate_examples": int(examples) if examples is not None else None,
        "intermediate_train_examples": results.get("intermediate_train_examples"),
        "validation_score": _validation_score(results),
        "adversarial": results.get("adversarial") or "",
        "adapters": results.get("adapters") or "",
        "intermediate_trained": _trained(results, "intermediate"),
        "target_trained": _trained(results, "target"),
        "target": results["target_task"],
        "target_family": results.get("task_family"),
        "benchmark": results.get("benchmark"),
        "seed": results.get("seed"),
        "run_dir": run_dir,
        "results_path": str(results_path) if results_path is not None else None,
        "finished_at": results.get("finished_at"),
    }
    main_metric = results.get("metric", "")
    rows = []
    for language, values in sorted((results.get("languages") or {}).items()):
        metrics = {k: _number(v) for k, v in values.items() if k not in NOT_METRICS}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        score = language_score(values, main_metric)
        if score is not None:
            metrics[SCORE_METRIC] = score
        for metric, value in sorted(metrics.items()):
            rows.append({**common, "language": language, "metric": metric, "value": value})
    return rows


@contextlib.contextmanager
def _connect(db_path: Path | str):
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(results)"))
        if columns != COLUMNS:  # written by an older xstilts: an index, so start it again
            conn.executescript("DROP TABLE results;" + _SCHEMA)
        yield conn
    finally:
        conn.close()


def _insert(conn: sqlite3.Connection, results: dict, results_path: Path | str | None) -> int:
    rows = result_rows(results, results_path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM results WHERE run_id = ?", (results["run_id"],))
        conn.executemany(
            f"INSERT INTO results ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})",
            [tuple(row[c] for c in COLUMNS) for row in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def index_run(
    db_path: Path | str, results: dict[str, Any], results_path: Path | str | None = None
) -> int:
    """Insert or replace one run's rows in a single transaction; returns rows written."""
    with _connect(db_path) as conn:
        return _insert(conn, results, results_path)


def _results_files(grid_dir: Path) -> list[Path]:
    return sorted((grid_dir / "runs").glob("*/results.json"))


def _from_grid(path: Path, grid_dir: Path) -> Path:
    """``path`` relative to the grid folder (as stored), when it lies inside it."""
    try:
        return path.relative_to(grid_dir)
    except ValueError:
        return path


def _in_grid(stored: str | None, grid_dir: Path) -> str | None:
    """A stored path as it is now: relative ones are inside the grid folder."""
    return None if stored is None else str(grid_dir / stored)


def _read_results(path: Path) -> dict[str, Any]:
    """A run's results, or one error naming a results file that is damaged."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise XstiltsError(
            f"{path}: not valid JSON ({err}); run that run's command again to rewrite it, "
            "or delete its folder"
        ) from None
    if not isinstance(payload, dict) or "run_id" not in payload or "target_task" not in payload:
        raise XstiltsError(f"{path}: not a run's results (no run_id or target_task)")
    return payload


def rebuild(grid_dir: Path | str) -> int:
    """Recreate the database from every ``runs/*/results.json``; returns runs indexed."""
    grid_dir = Path(grid_dir)
    target = db_path_for(grid_dir)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    count = 0
    try:
        with _connect(tmp) as conn:
            for path in _results_files(grid_dir):
                _insert(conn, _read_results(path), _from_grid(path, grid_dir))
                count += 1
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _indexed_run_ids(db_path: Path) -> set[str]:
    with _connect(db_path) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT run_id FROM results")}


def sync(grid_dir: Path | str) -> int:
    """Index runs present on disk but missing from the database; returns runs added."""
    grid_dir = Path(grid_dir)
    db_path = db_path_for(grid_dir)
    _forget_deleted_runs(db_path)  # first: a moved grid's old absolute paths are gone
    known = _indexed_run_ids(db_path)
    added = 0
    for path in _results_files(grid_dir):
        if path.parent.name in known:
            continue
        payload = _read_results(path)
        if payload["run_id"] not in known:
            index_run(db_path, payload, _from_grid(path, grid_dir))
            added += 1
    return added


def _forget_deleted_runs(db_path: Path) -> None:
    """Drop the rows of runs whose results file is gone (a run folder deleted by hand)."""
    with _connect(db_path) as conn:
        paths = conn.execute("SELECT DISTINCT run_id, results_path FROM results").fetchall()
        grid_dir = db_path.parent
        gone = [run_id for run_id, path in paths if path is None or not (grid_dir / path).is_file()]
        for run_id in gone:
            conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,))


def load_table(grid_dir: Path | str, *, sync_missing: bool = True) -> list[dict[str, Any]]:
    """All long-format rows; rebuilds a missing or corrupt database and indexes new runs."""
    grid_dir = Path(grid_dir)
    db_path = db_path_for(grid_dir)
    try:
        if not db_path.is_file() or _older_schema(db_path):
            rebuild(grid_dir)
        elif sync_missing:
            sync(grid_dir)
        return _select(db_path)
    except sqlite3.DatabaseError as err:
        log.warning("rebuilding %s: %s", db_path, err)
        rebuild(grid_dir)
        return _select(db_path)


def _older_schema(db_path: Path) -> bool:
    """Whether the database was written by an xstilts with other columns (its rows are
    then re-read from the run folders, not dropped unread)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(results)"))
    finally:
        conn.close()
    return columns != COLUMNS


def _select(db_path: Path) -> list[dict[str, Any]]:
    with _connect(db_path) as conn:
        cursor = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY run_id, language, metric"
        )
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor]
    for row in rows:
        for column in ("run_dir", "results_path"):
            row[column] = _in_grid(row[column], db_path.parent)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path | str) -> Path:
    """Write long-format rows as CSV with the database's columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per run: its task score (mean of the per-language ``score``)."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["metric"] == SCORE_METRIC:
            by_run[row["run_id"]].append(row)
    summary = []
    for run_id, run_rows in sorted(by_run.items()):
        first = run_rows[0]
        summary.append(
            {
                "run_id": run_id,
                "intermediate_option": first["intermediate_option"],
                "intermediate_examples": first["intermediate_examples"],
                "target": first["target"],
                "seed": first["seed"],
                "languages": len(run_rows),
                "score": statistics.fmean(r["value"] for r in run_rows),
            }
        )
    return summary
