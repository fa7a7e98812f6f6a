"""Every shipped config and example task file parses and resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from xstilts.config import load_config
from xstilts.experiment.resolve import resolve
from xstilts.model_store import EMBEDDED_MODELS
from xstilts.tasks.registry import read_task_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "tasks").glob("*.yaml")), ids=str)
def test_example_task_files_load(path):
    assert read_task_file(path)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_resolve(path, tmp_path, request):
    config = load_config(path, [f"data.data_dir={tmp_path}"])
    if config.model.name in EMBEDDED_MODELS:
        request.getfixturevalue("real_model")  # resolving checks that it is installed
    # CCGbank's tag file is the user's own; give the resolver one to read
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg" / "tags.txt").write_text("N\nNP\n")
    config.data.task_files = [ROOT / p for p in config.data.task_files]
    experiment = resolve(config)
    assert experiment.run_name
