"""The study presets in configs/studies plan what their studies need, with an estimate
of their GPU-hours, without any data on the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from xstilts.cli import app
from xstilts.config import parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment import costs
from xstilts.experiment.grid import check_report_options, parse_grid, plan_grid
from xstilts.experiment.grid_runner import run_grid
from xstilts.experiment.resolve import resolve
from xstilts.report import write_report

STUDIES = Path(__file__).resolve().parent.parent / "configs" / "studies"
XTREME = {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"}
XTREME_R = {"xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba", "mewslix"}
XTREME_R |= {"lareqa"}
F1_TARGETS = {"udpos", "panx", "xquad", "mlqa", "tydiqa"}
NINE = ["anli_plus", "mnli", "qqp", "squad", "hellaswag", "ccg", "cosmosqa", "commonsenseqa"]
NINE += ["sst2"]

# study -> (language adapter runs, intermediate runs, target runs, targets); 5 seeds each
PLANS = {
    "paper": (0, 12 * 5, 13 * 9 * 5, XTREME),
    "families_xtremer": (0, 12 * 5, 13 * 10 * 5, XTREME_R),
    "multitask_pawsx": (0, 12 * 5, 13 * 5, {"pawsx"}),
    "adversarial_xtremer": (0, 6 * 5, 10 * 10 * 5, XTREME_R),
    "scaling": (0, 19 * 5, 20 * 9 * 5, XTREME),
    "adapters": (40, 5 * 5, 11 * 5 * 5, F1_TARGETS),
}
BENCHMARKS = {study: "xtreme-r" if study.endswith("_xtremer") else "xtreme" for study in PLANS}


def _payload(study: str) -> dict[str, Any]:
    return yaml.safe_load((STUDIES / f"{study}.yaml").read_text())


def _scaled(study: str, scale: str | None = None):
    payload = _payload(study)
    payload["scale"] = scale
    return parse_grid(payload, f"{study}.yaml")


def _plan(study: str, tmp_path: Path):
    path = STUDIES / f"{study}.yaml"
    grid = parse_grid(yaml.safe_load(path.read_text()), str(path))
    return grid, plan_grid(grid, tmp_path, str(path), dry_run=True)


@pytest.mark.parametrize("study", sorted(PLANS))
def test_each_study_plans_its_design(study, tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)  # task_files are relative to the repository
    grid, plan = _plan(study, tmp_path)
    language_adapters, intermediate, targets, target_tasks = PLANS[study]
    counts = (len(plan.language_adapters), len(plan.intermediate), len(plan.targets))
    assert counts == (language_adapters, intermediate, targets)
    assert {run.target for run in plan.targets} == target_tasks
    assert grid.base["model"]["name"] == "xlm-roberta-large"
    assert grid.grid.seeds == [1, 2, 3, 4, 5]  # 5 against 5 runs can reach p < 0.05
    assert {run.benchmark for run in plan.targets} == {BENCHMARKS[study]}
    # every target run waits for its intermediate run (if any) and language adapters only
    names = {run.name for run in plan.intermediate}
    adapters = {run.name for run in plan.language_adapters}
    for run in plan.targets:
        assert set(run.depends_on) <= names | adapters
        waits = bool(set(run.depends_on) & names)
        assert waits == (grid.grid.intermediate[run.option] is not None)
    estimated = [run.gpu_hours for run in plan.runs if run.gpu_hours is not None]
    assert len(estimated) >= 0.9 * len(plan.runs) and all(h > 0 for h in estimated)


def _scales(study: str) -> list[str | None]:
    return [None, *_payload(study).get("scales", {})]


@pytest.mark.parametrize("study", sorted(PLANS))
def test_each_scale_has_a_report_whose_comparisons_name_its_options(study):
    """Every scale with options of its own (the CPU scales) has a report of its own, and
    each label a report names is an option of its scale's grid (planning refuses a
    report naming another, before any work)."""
    assert {"cpu"} <= set(_payload(study)["scales"])
    for scale in _scales(study):
        payload = _payload(study)
        section = payload["scales"][scale] if scale else payload
        if scale is None or "intermediate" in (section.get("grid") or {}):
            own = section.get("report") or {}
            assert own.get("question") and own.get("comparisons"), (study, scale)
        grid = _scaled(study, scale)
        check_report_options(grid, study)
        options = set(grid.grid.intermediate)
        assert grid.report.question and grid.report.comparisons
        for comparison in grid.report.comparisons:
            against = comparison.against
            named = [against] if isinstance(against, str) else against
            assert {comparison.option, *named} <= options | {"baseline"}, (study, scale)
            if comparison.choose == "best":
                assert isinstance(against, list) and len(against) >= 2
    assert _scaled("adapters").report.metric == "f1"
    assert _scaled("adapters", "cpu").report.metric == "f1"


@pytest.mark.parametrize("study", ["families_xtremer", "paper"])
def test_cpu_scale_estimates_read_what_its_short_target_runs_read(study, tmp_path, monkeypatch):
    """The CPU scales' selection settings reach `xstilts select` when no flag is given;
    a flag wins over them, and the full scale keeps the estimators' defaults."""
    from xstilts import api
    from xstilts.selection import command

    used: list[Any] = []
    monkeypatch.setattr(
        command,
        "run_select",
        lambda grid, out, methods, settings, *a, **k: used.append((methods, settings)),
    )
    path = STUDIES / f"{study}.yaml"
    api.select(path, tmp_path, overrides=["scale=cpu"])
    api.select(path, tmp_path, "semb", overrides=["scale=cpu"], max_examples=200)
    api.select(path, tmp_path)
    (cpu_methods, cpu), (_, flagged), (_, full) = used
    assert cpu_methods == ["logme"]
    assert (cpu.max_examples, cpu.fewshot_steps) == (64, 5)
    assert (flagged.max_examples, flagged.fewshot_steps) == (200, 5)
    assert (full.max_examples, full.fewshot_steps) == (1000, 10)


def test_a_report_naming_an_unknown_option_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)
    payload = _payload("multitask_pawsx")
    payload["report"]["comparisons"].append({"option": "all9", "against": ["mnli", "nil"]})
    grid = parse_grid(payload, "multitask_pawsx.yaml")
    with pytest.raises(XstiltsError, match=r"report.comparisons\[4\].against 'nil' is no option"):
        plan_grid(grid, tmp_path, "multitask_pawsx.yaml", dry_run=True)


def _comparisons(grid) -> set[tuple[str, tuple[str, ...], str]]:
    return {
        (c.option, tuple([c.against] if isinstance(c.against, str) else c.against), c.choose)
        for c in grid.report.comparisons
    }


def test_multitask_is_compared_with_the_best_single_task_and_with_each():
    grid = _scaled("multitask_pawsx")
    singles = tuple(NINE)
    assert {("all9", singles, "best"), ("all9", singles, "each")} <= _comparisons(grid)
    assert set(NINE) <= set(grid.grid.intermediate)
    cpu = _scaled("multitask_pawsx", "cpu")
    both = ("ud_pos+xquad_sentences", ("ud_pos", "xquad_sentences"))
    assert {(*both, "best"), (*both, "each")} <= _comparisons(cpu)


def test_the_adapter_study_has_full_single_adapter_fusion_and_madx_arms():
    grid = _scaled("adapters")
    options, settings = grid.grid.intermediate, grid.grid.option_settings
    for task in ("anli_plus", "squad", "hellaswag"):
        assert options[f"full-{task}"] is not None and "adapters" not in options[f"full-{task}"]
        assert settings[f"adapter-{task}"]["target"]["adapters"]["start"] == "continue"
        assert (f"adapter-{task}", (f"full-{task}",), "each") in _comparisons(grid)
    singles = ("adapter-anli_plus", "adapter-squad", "adapter-hellaswag")
    assert ("adapters+fusion", singles, "best") in _comparisons(grid)
    assert ("adapters+fusion", ("full-all9",), "each") in _comparisons(grid)
    assert settings["madx"]["language_adapters"]["task"] == "wiki_mlm"
    cpu = _scaled("adapters", "cpu")
    assert ("adapters+fusion", ("adapter-qnli", "adapter-qa"), "best") in _comparisons(cpu)
    assert cpu.grid.option_settings["madx"]["language_adapters"]["task"] == "tatoeba_text"


def test_the_adversarial_study_covers_xtreme_r_with_its_protocols(tmp_path, monkeypatch):
    """All 10 XTREME-R targets, XCOPA after SIQA, Tatoeba after SQuAD (target-phase
    FreeLB trains that stage adversarially), and SQuAD besides MNLI."""
    monkeypatch.chdir(STUDIES.parent.parent)
    grid, plan = _plan("adversarial_xtremer", tmp_path)
    tasks = {tuple(section["tasks"]) for section in grid.grid.intermediate.values() if section}
    assert tasks == {("mnli",), ("squad_v2",)}
    tatoeba = next(
        run
        for run in plan.targets
        if run.target == "tatoeba" and run.option == "mnli+target-freelb"
    )
    resolved = resolve(parse_config(yaml.safe_load(tatoeba.config_yaml)), planning=True)
    [stage] = resolved.config.target.stages
    assert stage.task == "squad"
    assert stage.training.adversarial is not None
    assert stage.training.adversarial.method == "freelb"
    for option in ("mnli", "squad"):
        for variant in ("freelb", "smart", "target-freelb"):
            assert (f"{option}+{variant}", (option,), "each") in _comparisons(grid)


def test_the_families_study_has_size_matched_arms():
    """One task per family, each capped at the same number of examples and trained for
    the same steps; each family as it is is compared with its matched arm."""
    from xstilts.report.data import task_family

    grid = _scaled("families_xtremer")
    matched = {k: v for k, v in grid.grid.intermediate.items() if k.endswith("-25k")}
    assert len(matched) == 6
    assert {len(section["tasks"]) for section in matched.values()} == {1}
    families = {task_family(section["tasks"][0]) for section in matched.values()}
    assert families == {"nli", "qa", "commonsense", "paraphrase", "sentiment", "syntax"}
    trainings = [section["training"] for section in matched.values()]
    assert all(training == trainings[0] for training in trainings)
    assert trainings[0]["max_train_examples"] == 25_000
    for label in matched:
        assert (label.removesuffix("-25k"), (label,), "each") in _comparisons(grid)
    assert grid.base["data"]["subsample_seed"] == "seed"


def test_the_scaling_study_has_a_multilingual_arm_step_budgets_and_per_seed_subsets():
    grid = _scaled("scaling")
    sizes = _sizes(grid.grid.intermediate)
    assert sizes["squad_translate_train"] == sizes["squad"] - {None}  # the same sizes
    assert sizes["mnli"] == sizes["hellaswag"] == sizes["squad"]
    assert grid.base["data"]["subsample_seed"] == "seed"
    steps = _scaled("scaling", "fixed-steps")
    assert steps.base["intermediate"]["training"]["max_steps"] == 3000
    assert steps.grid.intermediate == grid.grid.intermediate
    cpu, cpu_steps = _scaled("scaling", "cpu"), _scaled("scaling", "cpu-fixed-steps")
    cpu_sizes = _sizes(cpu.grid.intermediate)
    assert cpu_sizes["xquad_qnli_multilingual"] == {100, 300, 786}
    assert cpu_steps.grid == cpu.grid and cpu_steps.report == cpu.report
    assert cpu_steps.base["intermediate"]["training"]["max_steps"] == 25
    assert cpu.base["data"]["subsample_seed"] == "seed"


def _sizes(options: dict[str, Any]) -> dict[str, set[int | None]]:
    """Per intermediate task, the caps of its single-task options (None: all of it)."""
    sizes: dict[str, set[int | None]] = {}
    for section in options.values():
        if section is not None:
            [task] = section["tasks"]
            cap = (section.get("training") or {}).get("max_train_examples")
            sizes.setdefault(task, set()).add(cap)
    return sizes


# Training examples per task, REFERENCE sections 2 and 3 (xstilts/experiment/costs.py
# keeps the same counts); translate-train is ten translations of SQuAD v1.1, some
# questions lost where the answer could not be aligned: one translation's worth is a
# safe lower bound on its size.
TRAIN_SIZES = {**costs.TRAIN_EXAMPLES, "squad_translate_train": 87_599}


def _caps(run_config: dict[str, Any]) -> list[tuple[str, int]]:
    """(task, max_train_examples) of every phase of a planned run that caps its data."""
    caps = []
    inter = run_config.get("intermediate") or {}
    cap = (inter.get("training") or {}).get("max_train_examples")
    caps += [(task, cap) for task in inter.get("tasks", []) if cap]
    target = run_config["target"]
    for stage in target.get("stages", []):
        if (stage.get("training") or {}).get("max_train_examples"):
            caps.append((stage["task"], stage["training"]["max_train_examples"]))
    if (target.get("training") or {}).get("max_train_examples"):
        caps.append((target["task"], target["training"]["max_train_examples"]))
    return caps


@pytest.mark.parametrize("study", sorted(PLANS))
def test_every_cap_is_within_its_dataset(study, tmp_path, monkeypatch, stand_ins):
    """A max_train_examples at or above a task's training size is no subset: the full
    scale's caps stay below REFERENCE section 2's sizes, and each CPU scale's size-varied
    options below the stand-in sets' sizes."""
    monkeypatch.chdir(STUDIES.parent.parent)
    _, plan = _plan(study, tmp_path)
    for run in plan.runs:
        for task, cap in _caps(yaml.safe_load(run.config_yaml)):
            assert cap < TRAIN_SIZES[task], (study, run.option, task, cap)
    cpu = _scaled(study, "cpu")
    stand_in = _stand_in_sizes(stand_ins[0])
    for label, section in cpu.grid.intermediate.items():
        cap = ((section or {}).get("training") or {}).get("max_train_examples")
        for task in (section or {}).get("tasks", []) if cap else []:
            assert cap < stand_in[task], (study, label, task, cap)


def _stand_in_sizes(data_dir: Path) -> dict[str, int]:
    def lines(pattern: str) -> int:
        return sum(len(p.read_text().splitlines()) for p in data_dir.glob(pattern))

    conllu = (data_dir / "ud_pos" / "train-en.conllu").read_text()
    articles = json.loads((data_dir / "xquad_sentences" / "train-en.json").read_text())["data"]
    return {
        "xquad_qnli": lines("xquad_qnli/train-en.jsonl"),
        "xquad_qnli_multilingual": lines("xquad_qnli/train-[dza][ehr].jsonl"),
        "ud_pos": conllu.count("\n\n"),
        "xquad_sentences": sum(len(p["qas"]) for a in articles for p in a["paragraphs"]),
    }


def test_the_paper_retrieval_targets_read_the_intermediate_encoders(tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parent.parent)
    _, plan = _plan("paper", tmp_path)
    retrieval = [r for r in plan.targets if r.target in {"bucc2018", "tatoeba"}]
    assert len(retrieval) == 13 * 2 * 5
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
        run.target: parse_config(yaml.safe_load(run.config_yaml)).target.stages
        for run in plan.targets
    }
    assert [(s.task, s.carry_head) for s in stages["xcopa"]] == [("siqa", True)]
    assert [(s.task, s.carry_head) for s in stages["tatoeba"]] == [("squad", False)]
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
    metric = grid.report.metric
    assert metric == ("f1" if study == "adapters" else "score")
    written = {p.name for p in write_report(out, tmp_path / "report", metric=metric)}
    assert {"tables.md", "tables.tex", "main.csv", "report.html", "robustness.png"} <= written
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Summary</h2>" in html
    # only the scaling and families studies train options that differ in size alone
    assert ("learning_curves.png" in written) == (study in {"scaling", "families_xtremer"})
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
