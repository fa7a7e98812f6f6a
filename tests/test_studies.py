"""The study presets in configs/studies plan what their studies need, with an estimate
of their GPU-hours, without any data on the machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from xstilts.cli import app
from xstilts.config import parse_config
from xstilts.experiment import costs
from xstilts.experiment.grid import parse_grid, plan_grid
from xstilts.experiment.grid_runner import run_grid
from xstilts.experiment.resolve import resolve
from xstilts.report import write_report

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


def _planned(**sections: Any):
    payload = {"model": {"name": "xlm-roberta-large"}, **sections}
    return resolve(parse_config(payload, source="test"), planning=True)


def test_the_cost_model_of_one_run():
    """6 x parameters x tokens at 30% of an A100's bf16 peak: MNLI for 3 epochs at 256
    tokens on XLM-R Large is 1.63 GPU-hours; a stage adds its own training."""
    mnli = _planned(
        intermediate={"tasks": ["mnli"], "training": {"epochs": 3, "max_length": 256}},
        target={"task": "xnli"},
    )
    assert costs.intermediate_gpu_hours(mnli) == pytest.approx(1.63, abs=0.01)
    capped = mnli.config.model_copy(deep=True)
    assert capped.intermediate is not None
    capped.intermediate.training.max_train_examples = 39_270  # a tenth
    assert costs.intermediate_gpu_hours(resolve(capped, planning=True)) == pytest.approx(
        0.163, abs=0.001
    )
    xcopa = costs.target_gpu_hours(_planned(target={"task": "xcopa"}))
    staged = _planned(target={"task": "xcopa", "stages": [{"task": "siqa"}]})
    siqa_tokens = 33_410 * 5 * 128 * 3  # examples x epochs x max length x choices
    siqa_hours = 6 * 303e6 * siqa_tokens / (312e12 * 0.30 * 3600)
    assert costs.target_gpu_hours(staged) == pytest.approx(xcopa + siqa_hours)


def test_dry_run_prints_the_plan_and_its_gpu_hours(tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)
    result = CliRunner().invoke(
        app, ["run", "configs/studies/multitask_pawsx.yaml", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimated GPU-hours:" in text and "still to run" in text
    assert not (tmp_path / "runs").exists()


def test_the_xtremer_presets_follow_xtreme_r_two_stage_protocols(tmp_path, monkeypatch):
    """XCOPA after SIQA (COPA starts from the SIQA head); Tatoeba after SQuAD v1.1; the
    paper preset trains ANLI+ as jiant does, five tasks under one NLI head."""
    monkeypatch.chdir(STUDIES.parent.parent)
    _, plan = _plan("families_xtremer", tmp_path)
    stages = {
        run.target: yaml.safe_load(run.config_yaml)["target"]["stages"] for run in plan.targets
    }
    assert [(s["task"], s["carry_head"]) for s in stages["xcopa"]] == [("siqa", True)]
    assert [(s["task"], s["carry_head"]) for s in stages["tatoeba"]] == [("squad", False)]
    assert all(not stages[t] for t in stages if t not in {"xcopa", "tatoeba"})
    _, paper = _plan("paper", tmp_path / "paper")
    anli = next(r for r in paper.intermediate if r.option == "anli_plus")
    assert yaml.safe_load(anli.config_yaml)["intermediate"]["tasks"] == [
        "snli", "mnli", "anli_r1", "anli_r2", "anli_r3"
    ]  # fmt: skip


def _cpu_grid(study: str, cache: Path, **quick: Any):
    """The study's CPU scale; ``quick``: the tiny encoder and a few steps instead."""
    path = STUDIES / f"{study}.yaml"
    payload = yaml.safe_load(path.read_text())
    payload["scale"] = "cpu"
    base = payload["scales"]["cpu"]["base"]
    base["data"]["cache_dir"] = str(cache)
    if quick:
        base["model"] = {"tiny": {}}
        for phase in ("intermediate", "target"):
            base[phase]["training"].update(max_steps=2, max_eval_examples=16, eval_every_steps=2)
        base["evaluation"] = {"max_examples": 12}
    return parse_grid(payload, str(path))


@pytest.mark.parametrize("study", sorted(PLANS))
def test_each_cpu_scale_runs_and_writes_its_report(study, tmp_path, feature_cache):
    """Every CPU-scale study end to end on the tiny encoder with two steps per phase
    (tests/test_real_model.py runs one on the real encoder at its own scale)."""
    grid = _cpu_grid(study, feature_cache, quick=True)
    assert grid.name == f"{study}-cpu"
    out = tmp_path / study
    results = run_grid(grid, out, Console(record=True, width=120))
    assert results and all(r.ok for r in results), [r.error for r in results if not r.ok]
    metric = "f1" if study == "adapters" else "score"
    written = {p.name for p in write_report(out, tmp_path / "report", metric=metric, resamples=200)}
    assert {"tables.md", "tables.tex", "main.csv", "report.html", "robustness.png"} <= written
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Summary</h2>" in html
    # only the scaling study trains options that differ in size alone
    assert ("learning_curves.png" in written) == (study == "scaling")
    if study == "adapters":
        assert "Parameters trained per option" in (tmp_path / "report" / "tables.md").read_text()
    if study == "adversarial_xtremer":
        assert "adversarial.csv" in written


def test_the_qnli_stand_in_pairs_questions_with_answer_sentences_or_others(stand_ins):
    import json

    from xstilts.samples import XQUAD_LANGUAGES, real_samples

    folder = stand_ins[0] / "xquad_qnli"
    english = [json.loads(line) for line in (folder / "train-en.jsonl").open()]
    assert [row["label"] for row in english[:4]] == ["entailment", "not_entailment"] * 2
    articles = json.loads((real_samples() / "xquad" / "xquad.en.json").read_text())["data"]
    answers = {
        qa["question"]: qa["answers"][0]["text"]
        for article in articles
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
    positives = [row for row in english if row["label"] == "entailment"]
    assert all(answers[row["question"]] in row["sentence"] for row in positives)
    # another sentence of the paragraph: it may mention the answer's words by chance
    negatives = [row for row in english if row["label"] == "not_entailment"]
    mentioning = [row for row in negatives if answers[row["question"]] in row["sentence"]]
    assert len(mentioning) < 0.2 * len(negatives)
    sizes = {
        lang: sum(1 for _ in (folder / f"test-{lang}.jsonl").open()) for lang in XQUAD_LANGUAGES
    }
    assert len(set(sizes.values())) == 1 and sizes["en"] > 200  # parallel test sets


def test_the_xtreme_profile_gives_xtremes_settings_unless_the_config_sets_them():
    from xstilts.config import parse_config
    from xstilts.experiment.resolve import resolve

    def target(profile: str, **training: Any):
        payload = {
            "model": {"tiny": {}},
            "profile": profile,
            "target": {"task": "xquad", "training": training},
        }
        return resolve(parse_config(payload)).config.target.training

    xtreme = target("xtreme")
    assert (xtreme.batch_size, xtreme.epochs, xtreme.learning_rate) == (32, 3, 3e-5)
    assert (xtreme.warmup_steps, xtreme.weight_decay, xtreme.max_length) == (500, 1e-4, 384)
    assert target("xtreme", learning_rate=1e-5).learning_rate == 1e-5  # the config wins
    paper = target("xstilts")
    assert (paper.batch_size, paper.epochs, paper.learning_rate) == (16, 2, 1e-5)
    assert paper.warmup_steps is None and paper.warmup_fraction == 0.1
    # the default profile leaves existing run ids alone
    default = {"model": {"tiny": {}}, "target": {"task": "xnli"}}
    explicit = {**default, "profile": "xstilts"}
    assert resolve(parse_config(default)).run_name == resolve(parse_config(explicit)).run_name
    assert (
        resolve(parse_config({**default, "profile": "xtreme"})).run_name
        != resolve(parse_config(default)).run_name
    )
