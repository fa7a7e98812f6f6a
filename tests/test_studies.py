"""The study presets in configs/studies plan what their studies need, with an estimate
of their GPU-hours, without any data on the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xstilts.cli import app
from xstilts.experiment import costs
from xstilts.experiment.grid import parse_grid, plan_grid

STUDIES = Path(__file__).resolve().parent.parent / "configs" / "studies"
XTREME = {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"}
XTREME_R = {"xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba", "mewslix"}
XTREME_R |= {"lareqa"}

# study -> (intermediate runs, target runs, targets)
PLANS = {
    "paper": (12 * 3, 13 * 9 * 3, XTREME),
    "families_xtremer": (6 * 3, 7 * 10 * 3, XTREME_R),
    "multitask_pawsx": (12 * 5, 13 * 5, {"pawsx"}),
    "adversarial_xtremer": (3 * 3, 6 * 8 * 3, XTREME_R - {"tatoeba", "mewslix"}),
    "scaling": (15 * 3, 16 * 9 * 3, XTREME),
    "adapters": (2 * 3, 5 * 5 * 3, {"udpos", "panx", "xquad", "mlqa", "tydiqa"}),
}


def _plan(study: str, tmp_path: Path):
    path = STUDIES / f"{study}.yaml"
    grid = parse_grid(yaml.safe_load(path.read_text()), str(path))
    return grid, plan_grid(grid, tmp_path, str(path), dry_run=True)


@pytest.mark.parametrize("study", sorted(PLANS))
def test_each_study_plans_its_design(study, tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)  # task_files are relative to the repository
    grid, plan = _plan(study, tmp_path)
    intermediate, targets, target_tasks = PLANS[study]
    assert (len(plan.intermediate), len(plan.targets)) == (intermediate, targets)
    assert {run.target for run in plan.targets} == target_tasks
    assert grid.base["model"]["name"] == "xlm-roberta-large"
    # every target run waits for its intermediate run, and only for it
    names = {run.name for run in plan.intermediate}
    for run in plan.targets:
        assert set(run.depends_on) <= names
        assert bool(run.depends_on) == (grid.grid.intermediate[run.option] is not None)
    estimated = [run.gpu_hours for run in plan.runs if run.gpu_hours is not None]
    assert len(estimated) >= 0.9 * len(plan.runs) and all(h > 0 for h in estimated)


def test_the_paper_retrieval_targets_read_the_intermediate_encoders(tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)
    _, plan = _plan("paper", tmp_path)
    retrieval = [r for r in plan.targets if r.target in {"bucc2018", "tatoeba"}]
    assert len(retrieval) == 13 * 2 * 3
    assert all(r.depends_on for r in retrieval if r.option != "baseline")


def test_the_cost_model_of_one_run():
    """6 x parameters x tokens at 30% of an A100's bf16 peak: MNLI for 3 epochs at 256
    tokens on XLM-R Large."""
    tokens = 392_702 * 3 * 256
    expected = 6 * 303e6 * tokens / (312e12 * 0.30 * 3600)
    assert expected == pytest.approx(1.63, abs=0.01)
    assert costs._training_tokens("mnli", 3, 256, None) == tokens
    assert costs._training_tokens("mnli", 3, 256, 1000) == 1000 * 3 * 256
    assert costs._training_tokens("hellaswag", 1, 10, None) == 39_905 * 10 * 4


def test_dry_run_prints_the_plan_and_its_gpu_hours(tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)
    result = CliRunner().invoke(
        app, ["run", "configs/studies/multitask_pawsx.yaml", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimated GPU-hours:" in text and "still to run" in text
    assert not (tmp_path / "runs").exists()
