"""Run folders on a real file system, with other processes around: dead workers, killed
writes, umasks, hostile names, deleted folders, two runs at once, failed runs."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import socket
import stat
import threading
import time

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from xstilts import io
from xstilts.cli import app
from xstilts.errors import XstiltsError
from xstilts.experiment import run_folder
from xstilts.experiment.export import export_submission
from xstilts.experiment.grid import parse_grid
from xstilts.experiment.grid_runner import run_grid
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.run_folder import RunLock
from xstilts.tasks.registry import read_task_file

runner = CliRunner()


def _grid(data: dict, **grid_keys) -> dict:
    return {
        "grid": {
            "seeds": [1],
            "intermediate": {"baseline": None},
            "targets": ["demo_paraphrase"],
            **grid_keys,
        },
        "base": {
            "model": {"tiny": {}},
            "target": {"training": {"max_steps": 3, "batch_size": 16}},
            "evaluation": {"languages": ["en", "de"], "max_examples": 20},
            "data": data,
        },
    }


# -- 7. a dead worker is one failed run ------------------------------------------------


def test_a_killed_worker_fails_its_run_and_the_grid_goes_on(tmp_path, demo_data_section):
    payload = _grid(demo_data_section, seeds=[1, 2], max_parallel=2)
    payload["base"]["target"]["training"]["max_steps"] = 40
    grid = parse_grid(payload, "test")
    outcome: dict = {}
    thread = threading.Thread(
        target=lambda: outcome.update(results=run_grid(grid, tmp_path / "out", Console()))
    )
    thread.start()
    deadline = time.monotonic() + 120
    while len(multiprocessing.active_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = multiprocessing.active_children()[0]
    os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer would
    thread.join(timeout=300)
    results = outcome["results"]
    assert sorted(r.ok for r in results) == [False, True]
    failed = next(r for r in results if not r.ok)
    assert "SIGKILL" in failed.error and failed.log_path.name == "run.log"


# -- 8. scratch left by a killed write is cleaned; writes are flushed -----------------------


def test_scratch_of_killed_writes_is_removed_when_the_phase_starts(tiny_config, tmp_path):
    config = tiny_config(target__training__max_steps=3, runtime__keep="all")
    first = run_experiment(config, tmp_path)
    run_dir = first.run_dir
    (run_dir / "training.json").unlink()  # the phase did not finish: it starts again
    orphans = [
        run_dir / ".best.k2j4h1",
        run_dir / "checkpoints" / ".last.x8d7s0",
        run_dir / ".training.json.8sd7f.tmp",
        run_dir / "checkpoints" / ".state.json.0a9s8d.tmp",
    ]
    for orphan in orphans:
        if orphan.suffix == ".tmp":
            orphan.write_text("half")
        else:
            orphan.mkdir()
            (orphan / "model.safetensors").write_bytes(b"half")
    (run_dir / "checkpoints" / "last.old").mkdir()  # "last" exists: a leftover
    run_experiment(config, tmp_path)
    assert not [p for p in orphans if p.exists()]
    assert not (run_dir / "checkpoints" / "last.old").exists()
    assert (run_dir / "checkpoints" / "last").is_dir()


def test_atomic_writes_flush_files_and_folders(tmp_path, monkeypatch):
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", recording_fsync)
    io.atomic_write_text(tmp_path / "a.txt", "x")
    assert flushed == ["file", "dir"]
    flushed.clear()
    with io.atomic_dir(tmp_path / "folder") as scratch:
        (scratch / "b.bin").write_bytes(b"y")
    assert flushed.count("file") == 1 and flushed.count("dir") >= 2


# -- 9. files and folders follow the umask -----------------------------------------------


def test_run_files_follow_the_umask(tiny_config, tmp_path):
    previous = os.umask(0o002)
    try:
        config = tiny_config(target__training__max_steps=2, runtime__keep="all")
        outcome = run_experiment(config, tmp_path)
    finally:
        os.umask(previous)
    run_dir = outcome.run_dir
    for path in (run_dir / "results.json", run_dir / "config.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path
    for path in (run_dir / "best", run_dir / "checkpoints" / "last"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o775, path


# -- 10. names that become paths ---------------------------------------------------------


@pytest.mark.parametrize("language", ["../../../x", "a/b", "..", ""])
def test_a_language_code_that_is_not_a_plain_name_is_refused(tmp_path, language):
    spec = {"name": "evil", "family": "x", "format": "classification", "labels": ["0"]}
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": [{**spec, "languages": ["en", language]}]}))
    with pytest.raises(XstiltsError, match="languages"):
        read_task_file(path)


def test_export_refuses_a_target_task_that_is_not_a_task_name(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    results = {
        "run_id": "r1",
        "target_task": "../../escaped",
        "benchmarks": ["xtreme"],
        "split": "test",
        "languages": {},
        "finished_at": "2026-01-01T00:00:00",
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(XstiltsError, match="not a task name"):
        export_submission(tmp_path, "xtreme", tmp_path / "submission")
    assert not (tmp_path / "escaped").exists()


# -- 11. rows of deleted runs ------------------------------------------------------------


def test_results_forget_runs_whose_folder_was_deleted(tmp_path, demo_data_section):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(demo_data_section, seeds=[1, 2])))
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(path), "--out", str(out)]).exit_code == 0
    doomed, kept = sorted((out / "runs").iterdir())
    import shutil

    shutil.rmtree(doomed)
    listed = runner.invoke(app, ["results", str(out), "--csv", str(tmp_path / "rows.csv")])
    assert listed.exit_code == 0, listed.output
    rows = (tmp_path / "rows.csv").read_text()
    assert kept.name in rows and doomed.name not in rows


# -- 12. one process per run folder ------------------------------------------------------


def test_a_second_process_on_the_same_run_is_told_who_holds_it(tiny_config, tmp_path):
    config = tiny_config(target__training__max_steps=2)
    first = run_experiment(config, tmp_path)
    with RunLock(first.run_dir), pytest.raises(XstiltsError) as refused:
        run_experiment(config, tmp_path)
    message = str(refused.value)
    assert str(first.run_dir) in message and f"process {os.getpid()}" in message


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem without flock, as Lustre without its flock mount option."""

    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(run_folder.fcntl, "flock", refuse)


@pytest.mark.usefixtures("no_flock")
def test_without_flock_the_lock_is_a_file_naming_its_holder(tmp_path):
    folder = tmp_path / "run"
    held = folder / run_folder.HELD_FILE
    with RunLock(folder):
        holder = json.loads(held.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(XstiltsError, match=f"in use by process {os.getpid()} on"):
            RunLock(folder).__enter__()
    assert not held.exists()  # released
    with RunLock(folder):  # and taken again
        assert held.exists()


@pytest.mark.usefixtures("no_flock")
def test_without_flock_a_dead_holder_on_this_host_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()  # its pid is free now
    held = folder / run_folder.HELD_FILE
    held.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "x"}))
    with RunLock(folder):
        assert json.loads(held.read_text())["pid"] == os.getpid()


@pytest.mark.usefixtures("no_flock")
def test_without_flock_a_holder_on_another_host_is_named_with_the_file_to_delete(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    held = folder / run_folder.HELD_FILE
    held.write_text(json.dumps({"host": "gpu-node-7", "pid": 1234, "since": "2026-12-01"}))
    with pytest.raises(XstiltsError) as refused:
        RunLock(folder).__enter__()
    message = str(refused.value)
    assert "process 1234 on gpu-node-7" in message
    assert f"delete {held}" in message
    assert held.exists()  # nothing is taken from a holder it cannot see


def test_other_flock_errors_are_not_hidden(tmp_path, monkeypatch):
    def broken(fd: int, operation: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(run_folder.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"):
        RunLock(tmp_path / "run").__enter__()


# -- 13. a failed run says so ------------------------------------------------------------


def test_a_failed_run_is_marked_and_listed(tmp_path, demo_data_section):
    payload = _grid(demo_data_section)
    payload["grid"]["intermediate"] = {
        "baseline": None,
        "diverging": {"tasks": ["demo_nli"], "training": {"learning_rate": 1e30, "max_steps": 3}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(payload))
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(path), "--out", str(out)]).exit_code == 1
    (failed_dir,) = [p for p in (out / "intermediate").iterdir()]
    status = json.loads((failed_dir / "status.json").read_text())
    assert status["state"] == "failed" and "diverged" in status["error"]
    plan = runner.invoke(app, ["run", str(path), "--out", str(out), "--dry-run"])
    assert "failed" in plan.output and "diverged" in " ".join(plan.output.split())
    listed = runner.invoke(app, ["results", str(out)])
    assert listed.exit_code == 0
    assert "failed" in listed.output and failed_dir.name[:20] in " ".join(listed.output.split())
