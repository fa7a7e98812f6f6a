"""Runs on two processes (torchrun, the CPU and gloo) against the same runs on one.

One config trains every trainable format: a multi-task intermediate phase of
classification, tagging, span QA, dual-encoder retrieval and MLM (several heads: DDP
looks for unused parameters), then a multiple-choice target (one head: it does not).
A second config evaluates a retrieval target zero-shot from the same intermediate
encoder. The two-process run of the first is killed once and resumed.

Scores cannot match exactly: each process draws its own dropout masks for its half of
a batch, and gradients are summed in another order. With dropout off, the two
trainings would be the same computation; with it on, the tiny model's scores move by a
few points between seeds. So steps and examples must match exactly, and scores within
``SCORE_TOLERANCE`` points (a wrong shard, a rank training alone or evaluating part
of a language moves them by far more, or breaks the step counts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.task_fixtures import EVERY_FORMAT, every_format_data
from xstilts.samples import real_samples

SCORE_TOLERANCE = 15.0
"""Points (0-100 scale) between the one- and two-process scores of a language."""
LOSS_TOLERANCE = 0.25
"""Relative difference of the first logged training loss (mean over both processes)."""

INTERMEDIATE = [task for task in EVERY_FORMAT if task != "xcopa"]


def _launcher_works() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


pytestmark = pytest.mark.skipif(
    not _launcher_works(), reason="torch.distributed with gloo is needed for torchrun"
)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
    )
    return env


def _command(config: Path, out: Path, processes: int) -> list[str]:
    cli = ["-m", "xstilts.cli", "run", str(config), "--out", str(out)]
    if processes == 1:
        return [sys.executable, *cli]
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [sys.executable, *launch, *cli]


def _run(config: Path, out: Path, processes: int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _command(config, out, processes),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _kill_after_first_checkpoint(config: Path, out: Path, processes: int) -> None:
    """Start the run and kill every process of it (SIGKILL, as a lost node would) once
    the intermediate phase has saved its first checkpoint."""
    worker = subprocess.Popen(
        _command(config, out, processes),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob("intermediate/*/checkpoints/last")):
            assert worker.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.01)
    finally:
        _kill_all(worker.pid)
        worker.wait()
    assert not list(out.glob("runs/*/results.json"))


def _kill_all(pid: int) -> None:
    """SIGKILL a launcher and its workers (torchrun starts each in its own session)."""
    launcher = psutil.Process(pid)
    for process in [*launcher.children(recursive=True), launcher]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def _configs(folder: Path, task_files: list[Path], cache: Path) -> tuple[Path, Path]:
    """(every trainable format, zero-shot retrieval): the same intermediate phase."""
    small = {"learning_rate": 1e-3, "batch_size": 4, "max_train_examples": 24}
    data = {
        "source": "local",
        "data_dir": str(folder),
        "task_files": [str(path) for path in task_files],
        "cache_dir": str(cache),
    }
    payload: dict[str, Any] = {
        "seed": 5,
        "model": {"tiny": {}},
        "runtime": {"cpu": True},
        "intermediate": {
            "tasks": INTERMEDIATE,
            "sampler": {"strategy": "uniform"},
            "training": {
                **small,
                "max_steps": 40,  # long enough to be killed in (25 ms a step)
                "eval_every_steps": 20,
                "checkpoint_every_steps": 4,
                "max_eval_examples": 12,
                "max_length": 96,
                "gradient_accumulation_steps": 2,
            },
        },
        "target": {
            "task": "xcopa",
            "training": {**small, "max_steps": 6, "eval_every_steps": 3, "max_length": 64},
        },
        "evaluation": {"languages": ["it", "zh"], "max_examples": 40},
        "data": data,
    }
    trained = folder / "every-format.yaml"
    trained.write_text(yaml.safe_dump(payload))
    payload["target"] = {"task": "tatoeba", "training": {"max_length": 64}}
    payload["evaluation"] = {"languages": ["de", "fr"]}
    zero_shot = folder / "zero-shot.yaml"
    zero_shot.write_text(yaml.safe_dump(payload))
    return trained, zero_shot


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, stand_ins, demo_data) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("multiprocess")
    task_files = every_format_data(folder, stand_ins, demo_data)
    (folder / "tatoeba").symlink_to(real_samples() / "tatoeba")
    trained, zero_shot = _configs(folder, task_files, folder / "cache")
    started = time.monotonic()
    one = {"out": folder / "one"}
    one["trained"] = _run(trained, one["out"], 1)
    one["zero_shot"] = _run(zero_shot, one["out"], 1)
    two = {"out": folder / "two"}
    shutil.rmtree(folder / "cache")  # the two-process run tokenises too (main first)
    _kill_after_first_checkpoint(trained, two["out"], 2)
    two["trained"] = _run(trained, two["out"], 2)
    two["zero_shot"] = _run(zero_shot, two["out"], 2)
    print(f"multi-process runs: {time.monotonic() - started:.0f} s")
    return {"one": one, "two": two}


def _run_dirs(out: Path) -> dict[str, Path]:
    return {path.name.split("-")[0]: path for path in (out / "runs").iterdir()}


def _training(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "training.json").read_text())


def test_two_processes_end_with_one_set_of_files(runs) -> None:
    two = runs["two"]
    folders = _run_dirs(two["out"])
    assert set(folders) == {"xcopa", "tatoeba"}
    for name in ("trained", "zero_shot"):
        printed = two[name].stdout
        assert printed.count("run directory:") == 1  # the table and footer: once
        assert "rank 1" not in printed + two[name].stderr  # no warning, no error
    for folder in folders.values():
        results = json.loads((folder / "results.json").read_text())
        assert results["run_id"] == folder.name
        assert json.loads((folder / "status.json").read_text())["state"] == "finished"
        assert not list(folder.rglob("*.tmp"))
    inter_dirs = list((two["out"] / "intermediate").iterdir())
    assert len(inter_dirs) == 1  # trained once, reused by the zero-shot run
    # One attempt: each line once (rank 1 writes none). Two attempts (killed, resumed):
    # each attempt's opening line once, and one resumption.
    lines = _log_lines(folders["tatoeba"] / "run.log")
    repeated = [line for line, count in Counter(lines).items() if count > 1]
    assert lines and not repeated, repeated
    opening = f"INFO xstilts.experiment.pipeline: run {folders['xcopa']}"
    assert _log_lines(folders["xcopa"] / "run.log").count(opening) == 2
    resumed = [line for line in _log_lines(inter_dirs[0] / "train.log") if "resuming" in line]
    assert len(resumed) == 1, resumed


def _log_lines(path: Path) -> list[str]:
    """A log's lines without their time stamps."""
    return [line.split(" ", 2)[2] for line in path.read_text().splitlines()]


def test_two_processes_train_the_same_steps_as_one(runs) -> None:
    one, two = (_run_dirs(runs[n]["out"]) for n in ("one", "two"))
    assert one.keys() == two.keys()  # the run ids do not depend on the process count
    inter_one, inter_two = (
        next((runs[n]["out"] / "intermediate").iterdir()) for n in ("one", "two")
    )
    assert inter_one.name == inter_two.name
    for single, double in ((inter_one, inter_two), (one["xcopa"], two["xcopa"])):
        a, b = _training(single), _training(double)
        assert a["steps"] == b["steps"] == a["total_steps"]
        assert (a["processes"], b["processes"]) == (1, 2)
        for task, batch in a["batches"].items():
            other = b["batches"][task]
            assert batch["examples_per_step"] == other["examples_per_step"] == 4
            assert other["per_process_micro_batch"] == batch["per_process_micro_batch"] // 2
        first_a, first_b = a["train_loss"][0]["loss"], b["train_loss"][0]["loss"]
        assert abs(first_a - first_b) <= LOSS_TOLERANCE * first_a
    inter = _training(inter_two)
    assert inter["batches"]["demo_nli"] == {
        "examples_per_step": 4,
        "accumulation": 2,
        "per_process_micro_batch": 1,
    }
    assert set(inter["validation"][-1]["tasks"]) == set(INTERMEDIATE)


def test_two_processes_score_within_tolerance_of_one(runs) -> None:
    one, two = (_run_dirs(runs[n]["out"]) for n in ("one", "two"))
    for target, metric in (("xcopa", "accuracy"), ("tatoeba", "accuracy")):
        a = json.loads((one[target] / "results.json").read_text())
        b = json.loads((two[target] / "results.json").read_text())
        assert a["metric"] == b["metric"] == metric
        assert set(a["languages"]) == set(b["languages"])
        for lang, scores in a["languages"].items():
            assert b["languages"][lang]["num_examples"] == scores["num_examples"]
            assert abs(b["languages"][lang][metric] - scores[metric]) <= SCORE_TOLERANCE
        english_a, english_b = a["english"], b["english"]
        if english_a is not None:
            assert abs(english_a["score"] - english_b["score"]) <= SCORE_TOLERANCE
    zero_shot = json.loads((two["tatoeba"] / "results.json").read_text())
    assert zero_shot["training"] is None  # evaluated straight from the encoder
