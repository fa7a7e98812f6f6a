"""Readable logs: off a terminal, log lines at intervals instead of progress-bar frames."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from tests.configs import write_config
from xstilts.progress import IntervalLog, progress_bar


def test_a_piped_run_logs_lines_not_progress_frames(tmp_path, demo_data, feature_cache):
    data_dir, task_file = demo_data
    training = {
        "batch_size": 8,
        "epochs": 1,
        "max_train_examples": 160,
        "max_eval_examples": 32,
        "eval_every_steps": 10,
    }
    config = write_config(
        tmp_path / "config.yaml",
        {
            "model": {"tiny": {}},
            "target": {"task": "demo_paraphrase", "training": training},
            "evaluation": {"languages": ["en", "de"], "max_examples": 20},
            "data": {
                "source": "local",
                "data_dir": str(data_dir),
                "task_files": [str(task_file)],
                "cache_dir": str(tmp_path / "cache"),  # tokenised afresh: datasets' bars run
            },
        },
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for inherited in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        env.pop(inherited, None)
    done = subprocess.run(
        [sys.executable, "-m", "xstilts", "run", str(config), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=300,
        check=False,
    )
    output = done.stdout.decode()
    assert done.returncode == 0, output[-2000:]
    assert "\r" not in output
    assert "\x1b[" not in output  # no cursor movement or colour codes either
    lines = output.splitlines()
    # 20 steps: a line per 1/20 of training, one per validation, a few per phase
    assert len(lines) <= 50, output
    steps = [line for line in lines if re.search(r"INFO step \d+/20  loss [\d.]+  lr ", line)]
    assert len(steps) == 20
    assert any("validation score" in line for line in lines)
    assert any("demo_paraphrase de: accuracy" in line for line in lines)
    assert not any(re.search(r"\d+%\|", line) for line in lines)  # no tqdm bar, even datasets'


def test_interval_log_writes_a_line_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="xstilts.progress")
    progress = IntervalLog(range(4), desc="validate x", interval=0.0)
    progress.set_postfix(loss="0.5")
    assert list(progress) == [0, 1, 2, 3]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert messages[-1].startswith("validate x: 4/4 (100%), ")
    assert messages[-1].endswith("loss=0.5")


def test_interval_log_is_quiet_within_the_interval_and_when_disabled(caplog):
    caplog.set_level(logging.INFO, logger="xstilts.progress")
    for progress in (
        IntervalLog(total=100, desc="train", interval=3600.0),
        IntervalLog(total=100, desc="train", interval=0.0, disable=True),
    ):
        for _ in range(100):
            progress.update(1)
        progress.close()
    assert caplog.records == []


def test_off_a_terminal_progress_bar_is_an_interval_log(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("xstilts.progress.interactive", lambda: False)
    progress = progress_bar(total=10, initial=3, desc="train run")
    assert isinstance(progress, IntervalLog)
    assert (progress.n, progress.total, progress.desc) == (3, 10, "train run")
