"""Paper reports of a grid: numbers, significance and the files written."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from xstilts.errors import XstiltsError
from xstilts.experiment.report_spec import ReportSpec
from xstilts.report import write_report
from xstilts.report.data import TARGET_ONLY, load_grid, option_family
from xstilts.report.render import latex_escape
from xstilts.report.tables import (
    choose_on_validation,
    family_rows,
    main_rows,
    question_rows,
    xtreme_score,
)

PNG = b"\x89PNG\r\n\x1a\n"
XNLI = {"en": 80.0, "de": 70.0, "fr": 72.0}
XQUAD = {"en": (70.0, 80.0), "es": (60.0, 70.0), "ar": (50.0, 64.0), "hi": (40.0, 50.0)}
# per-language noise with mean 0, so the task-score means stay round
NOISE = {"en": 0.5, "de": -0.5, "fr": 0.0, "es": -0.5, "ar": 0.25, "hi": -0.25}
BONUS = {"baseline": 0.0, "mnli": 5.0, "qqp": 0.0, "anli_plus": 3.0}
# English validation scores follow the test scores, except MNLI's on XQuAD: the best
# option per target must be chosen on validation (ANLI+ there), not on test (MNLI).
VALIDATION_SHIFT = {("mnli", "xquad"): -10.0}
MNLI_SIZE = 392_702


def _write(
    grid: Path,
    tasks: list[str],
    target: str,
    seed: int,
    examples=None,
    bonus=None,
    option: str | None = None,
    adapters: str = "",
):
    named = option
    option = option or "+".join(tasks) or "baseline"
    label = option if examples is None else f"{option}{examples}"
    bonus = BONUS[option] if bonus is None else bonus
    noisy = option not in ("baseline", "qqp")

    def value(lg: str, v: float) -> float:
        return v + bonus + seed + (NOISE[lg] if noisy else 0.0)

    if target == "xnli":
        langs = {lg: {"accuracy": value(lg, v), "num_examples": 9} for lg, v in XNLI.items()}
        metric = "accuracy"
    else:
        langs = {
            lg: {"exact_match": value(lg, em), "f1": value(lg, f1), "num_examples": 9}
            for lg, (em, f1) in XQUAD.items()
        }
        metric = "f1"
    run_dir = grid / "runs" / f"{label}-{target}-s{seed}"
    run_dir.mkdir(parents=True)
    payload = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "model": "tiny",
        "seed": seed,
        "intermediate_tasks": tasks,
        "target_task": target,
        "task_family": "nli" if target == "xnli" else "qa",
        "metric": metric,
        "languages": langs,
        "finished_at": "2025-01-01T00:00:00+00:00",
    }
    english = langs["en"]["accuracy" if target == "xnli" else "f1"]
    validation = english + VALIDATION_SHIFT.get((option, target), 0.0)
    payload["training"] = {"steps": 10, "best_step": 10, "best_score": validation}
    if tasks:
        payload["intermediate_train_examples"] = examples or MNLI_SIZE
    if examples is not None or named is not None:
        payload["intermediate_option"] = option
        payload["intermediate_max_train_examples"] = examples
    if adapters:
        payload["adapters"] = adapters
    (run_dir / "results.json").write_text(json.dumps(payload))


SEEDS = (1, 2, 3, 4, 5, 6)
"""Six runs a side: the smallest exact permutation p (2/924) survives Holm over the
main table's nine comparisons (0.05/9)."""


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    grid = tmp_path / "my_grid"
    for tasks in ([], ["mnli"], ["qqp"], ["anli_plus"]):
        for target in ("xnli", "xquad"):
            for seed in SEEDS:
                _write(grid, tasks, target, seed)
    return grid


@pytest.fixture
def sized_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "sizes"
    for seed in (1, 2):
        for target in ("xnli", "xquad"):
            _write(grid, [], target, seed)
            for examples, bonus in ((1000, 1.0), (10000, 4.0)):
                _write(grid, ["mnli"], target, seed, examples=examples, bonus=bonus)
            _write(grid, ["mnli"], target, seed, bonus=5.0)  # all of MNLI
    return grid


def _rows(grid: Path):
    scores = load_grid(grid)
    return scores, {r.option.label: r for r in main_rows(scores)}


def test_main_table_numbers(grid: Path):
    scores, rows = _rows(grid)
    assert scores.targets == ["xnli", "xquad"]
    assert [o.label for o in scores.options] == ["baseline", "anli_plus", "mnli", "qqp"]
    base = rows["baseline"].cells
    # xnli: languages average 74 + seed -> 75..80; sample SD of 1..6
    assert base["xnli"].mean == pytest.approx(77.5)
    assert base["xnli"].std == pytest.approx(statistics.stdev(SEEDS))
    assert base["xnli"].n == 6
    assert base["xnli"].diff is None and base["xnli"].test is None
    # xquad: the score is (EM+F1)/2 averaged over languages: 60.5 + seed
    assert base["xquad"].mean == pytest.approx(64.0)
    mnli = rows["mnli"].cells
    assert mnli["xnli"].mean == pytest.approx(82.5)
    assert mnli["xquad"].diff == pytest.approx(5.0)
    assert rows["anli_plus"].cells["xnli"].diff == pytest.approx(3.0)
    assert rows["mnli"].average == pytest.approx((82.5 + 69.0) / 2)
    assert rows["mnli"].average_diff == pytest.approx(5.0)


def test_comparisons_use_runs_and_the_table_correction(grid: Path):
    _, rows = _rows(grid)
    for target in ("xnli", "xquad"):
        test = rows["mnli"].cells[target].test
        # one number per run: 6 against 6, unpaired (the baseline has no intermediate run)
        assert (test.n_a, test.n_b, test.paired) == (6, 6, False)
        assert test.min_p == pytest.approx(2 / 924)
        assert test.p < test.p_adjusted < 0.05 and test.significant
        assert rows["qqp"].cells[target].diff == pytest.approx(0.0)
        assert rows["qqp"].cells[target].test.p == pytest.approx(1.0)
        assert not rows["qqp"].cells[target].test.significant
    # ANLI+ is 3 points up with seed noise 1..6 overlapping: Holm keeps it below the bar
    anli = rows["anli_plus"].cells["xnli"].test
    assert anli.p_adjusted >= anli.p
    assert rows["mnli"].average_test.n_a == 6


def test_best_per_target_is_chosen_on_validation_never_on_test(grid: Path):
    scores, rows = _rows(grid)
    score = xtreme_score(list(rows.values()), scores)
    assert score.best_option == {"xnli": "mnli", "xquad": "anli_plus"}  # by validation
    assert score.rule == {"xnli": "validation", "xquad": "validation"}
    assert score.best_score == pytest.approx((82.5 + 67.0) / 2)
    assert score.baseline_score == pytest.approx((77.5 + 64.0) / 2)


def test_tied_validation_is_not_broken_by_test_scores(grid: Path):
    scores = load_grid(grid)
    for key in list(scores.validation):
        scores.validation[key] = 50.0  # every option ties on validation
    chosen, rule = choose_on_validation(scores, ["qqp", "mnli"], "xnli")
    assert (chosen, rule) == ("qqp", "validation")  # the earlier candidate, not MNLI's test


def test_targets_without_validation_are_chosen_by_proxy(grid: Path):
    scores = load_grid(grid)
    for key in [k for k in scores.validation if k[1] == "xquad"]:
        del scores.validation[key]  # as Tatoeba: no validation score at all
    rows = main_rows(scores)
    score = xtreme_score(rows, scores)
    # the proxy is the mean validation over the other targets: xnli's, where MNLI leads
    assert score.best_option["xquad"] == "mnli" and score.rule["xquad"] == "proxy"
    assert score.best_score is not None  # the headline covers every target


def test_families_pool_runs_and_count_the_baseline_once(grid: Path):
    scores, rows = _rows(grid)
    families = {f.family: f for f in family_rows(list(rows.values()), scores.targets, scores)}
    assert set(families) == {"baseline", "nli", "paraphrase"}
    assert families["nli"].options == ["anli_plus", "mnli"]
    assert families["nli"].diffs["xnli"] == pytest.approx(4.0)
    assert families["nli"].spreads["xnli"] == pytest.approx(2**0.5)  # 80.5 and 82.5
    nli = families["nli"].tests["xnli"]
    assert (nli.n_a, nli.n_b) == (12, 6)  # both options' runs against six baseline runs
    assert families["paraphrase"].tests["xnli"].p == 1.0
    assert families["paraphrase"].spreads["xnli"] is None  # one option
    assert option_family(("mnli", "squad")) == "multi"
    assert option_family(("mnli", "anli_plus")) == "nli"


def test_target_only_variants_are_compared_with_the_identified_baseline(grid: Path):
    for seed in SEEDS:  # a target adapter: no intermediate tasks, but a variant
        _write(grid, [], "xnli", seed, bonus=1.0, option="target_adapter", adapters="target:lora")
    scores, rows = _rows(grid)
    assert scores.baseline.label == "baseline"
    variant = next(o for o in scores.options if o.label == "target_adapter")
    assert not variant.is_baseline and variant.family == TARGET_ONLY
    assert rows["target_adapter"].cells["xnli"].diff == pytest.approx(1.0)
    named = load_grid(grid, baseline="qqp")
    assert named.baseline.label == "qqp"
    with pytest.raises(XstiltsError, match=r"report\.baseline 'nope' is no option"):
        load_grid(grid, baseline="nope")


def test_study_comparisons_choose_the_reference_on_validation(grid: Path):
    scores = load_grid(grid)
    spec = ReportSpec(
        comparisons=[
            {"option": "anli_plus", "against": ["mnli", "qqp"], "choose": "best"},
            {"option": "anli_plus", "against": "qqp"},
        ]
    )
    rows = question_rows(scores, spec.comparisons)
    best = {r.target: r for r in rows if r.how != "named"}
    # on XQuAD, MNLI's validation is shifted down: QQP is the better single option there
    assert best["xnli"].reference == "mnli" and best["xquad"].reference == "qqp"
    assert best["xnli"].test.diff == pytest.approx(-2.0)
    named = [r for r in rows if r.how == "named"]
    assert [r.reference for r in named] == ["qqp", "qqp"]
    assert all(r.test.p_adjusted is not None for r in rows)


def _check_png(path: Path):
    assert path.read_bytes()[:8] == PNG
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_write_report_files(grid: Path, tmp_path: Path):
    out = tmp_path / "report"
    paths = write_report(grid, out)
    names = {p.name for p in paths}
    assert {"main.csv", "xtreme.csv", "families.csv", "tables.md", "tables.tex"} <= names
    assert {"heatmap.png", "languages_xnli.png", "report.html"} <= names
    assert "learning_curves.png" not in names
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
    for path in out.glob("*.png"):
        _check_png(path)

    with (out / "main.csv").open() as handle:
        main = {(r["option"], r["target"]): r for r in csv.DictReader(handle)}
    assert float(main[("mnli", "xquad")]["mean"]) == pytest.approx(69.0)
    assert float(main[("mnli", "xquad")]["p_value"]) < 0.05
    assert float(main[("mnli", "xquad")]["p_corrected"]) < 0.05
    assert main[("mnli", "average")]["n_runs"] == "6"

    md = (out / "tables.md").read_text()
    assert "| mnli | nli | 82.5 ± 1.9 (+5.0\\*)" in md
    assert "| qqp | paraphrase | 77.5 ± 1.9 (+0.0) |" in md
    assert "Unit: the run" in md and "Holm correction over the table's 9 comparisons" in md
    tex = (out / "tables.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "anli\\_plus" in tex and "anli_plus" not in tex.replace("anli\\_plus", "")
    assert latex_escape("a_b & 5%") == "a\\_b \\& 5\\%"

    html = (out / "report.html").read_text()
    assert "<title>my_grid</title>" in html
    # main, XTREME score, families, robustness, each comparison in full
    assert html.count("<table>") == 5
    assert html.count("data:image/png;base64,") == 3
    assert "permutation" in html
    summary = html.split("<h2>Summary</h2>")[1].split("</ul>")[0]
    assert "xnli: the option chosen on validation is mnli, 82.5 on test" in summary
    # on XQuAD MNLI has the best test mean but not the best validation: never named best
    assert "xquad: the option chosen on validation is anli_plus" in summary
    assert "on validation (xnli mnli, xquad anli_plus)" in summary
    assert "score over all 2 targets of 74.8 against the baseline&#x27;s 70.8 (+4.0)" in summary
    assert "highest mean" not in summary and "the smallest SD" not in summary


def test_robustness_statistics_and_their_significance(grid: Path):
    from xstilts.report.robustness import robustness_rows

    rows = {(r.option.label, r.target): r for r in robustness_rows(load_grid(grid))}
    mnli, base = rows[("mnli", "xnli")], rows[("baseline", "xnli")]
    # each run's lowest language (de), averaged over runs
    assert base.values["worst"] == pytest.approx(73.5) and base.worst_language == "de"
    assert mnli.values["worst"] == pytest.approx(78.0) and mnli.worst_language == "de"
    assert mnli.diffs["worst"] == pytest.approx(4.5)
    assert mnli.values["seed_sd"] == pytest.approx(statistics.stdev(SEEDS))
    assert mnli.diffs["seed_sd"] == pytest.approx(0.0) and mnli.tests["seed_sd"].p == 1.0
    assert base.values["gap"] == pytest.approx(9.0)
    assert mnli.diffs["gap"] == pytest.approx(0.75)
    assert mnli.tests["gap"].n_a == 6  # one gap per run
    assert mnli.tests["mean"].p < 0.05 <= mnli.tests["mean"].p_adjusted  # 30 comparisons
    assert base.tests == {} and base.diffs == {}


def test_language_target_and_learning_curves(sized_grid: Path, tmp_path: Path):
    paths = write_report(sized_grid, tmp_path / "r", target_for_languages="xquad")
    names = {p.name for p in paths}
    assert {"learning_curves.png", "languages_xquad.png"} <= names
    _check_png(tmp_path / "r" / "learning_curves.png")
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    scores, rows = _rows(sized_grid)
    assert rows["mnli@10000"].cells["xnli"].diff == pytest.approx(4.0)
    # one series, in numeric order, "all" last at the size actually trained on
    [(key, members)] = scores.series().items()
    assert key[0] == ("mnli",)
    assert [o.label for o in members] == ["mnli@1000", "mnli@10000", "mnli"]
    assert [o.train_examples for o in members] == [1000, 10000, MNLI_SIZE]
    assert [o.label for o in scores.options] == ["baseline", "mnli@1000", "mnli@10000", "mnli"]


def _adapter_grid(tmp_path: Path) -> Path:
    """Full fine-tuning against a bottleneck adapter on XQuAD, with parameters trained."""
    grid = tmp_path / "adapters"
    for option, adapters, trained, bonus in (
        ("full", "", 117_654_530, 0.0),
        ("seq_bn", "target:seq_bn", 1_487_234, -2.0),
    ):
        for seed in (1, 2):
            _write(grid, [], "xquad", seed, bonus=bonus)
            run_dir = grid / "runs" / f"baseline-xquad-s{seed}"
            payload = json.loads((run_dir / "results.json").read_text())
            payload.update(
                run_id=f"{option}-s{seed}",
                intermediate_option=option,
                adapters=adapters,
                parameters={"target": {"trained": trained, "total": 117_654_530}},
            )
            moved = grid / "runs" / f"{option}-s{seed}"
            run_dir.rename(moved)
            payload["run_dir"] = str(moved)
            (moved / "results.json").write_text(json.dumps(payload))
    return grid


def test_options_compared_by_any_metric_with_parameters_trained(tmp_path: Path):
    grid = _adapter_grid(tmp_path)
    f1 = {r.option.label: r for r in main_rows(load_grid(grid, "f1"))}
    mean_f1 = sum(f1 for _, f1 in XQUAD.values()) / len(XQUAD)
    assert f1["full"].cells["xquad"].mean == pytest.approx(mean_f1 + 1.5)  # seeds 1, 2
    assert f1["seq_bn"].cells["xquad"].mean == pytest.approx(mean_f1 + 1.5 - 2.0)
    score = {r.option.label: r for r in main_rows(load_grid(grid))}
    assert score["full"].cells["xquad"].mean < f1["full"].cells["xquad"].mean  # (EM+F1)/2

    write_report(grid, tmp_path / "report", metric="f1")
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "'f1' averaged over languages" in tables
    assert "Parameters trained per option" in tables
    section = tables.split("Parameters trained per option")[1].splitlines()
    row = next(line for line in section if line.startswith("| seq_bn"))
    assert "target:seq_bn" in row and "1.49M" in row
    assert "full fine-tuning" in next(line for line in section if line.startswith("| full"))
    assert "118M" in next(line for line in section if line.startswith("| full"))

    with pytest.raises(XstiltsError, match="--metric bleu: no run of adapters records it"):
        load_grid(grid, "bleu")


def test_language_adapter_fallbacks_are_listed(grid: Path, tmp_path: Path):
    run = grid / "runs" / "mnli-xnli-s1" / "results.json"
    payload = json.loads(run.read_text())
    used = {"en": "en", "de": "de", "fr": "en"}  # French had no adapter of its own
    for lang, adapter in used.items():
        payload["languages"][lang]["language_adapter"] = adapter
    run.write_text(json.dumps(payload))
    write_report(grid, tmp_path / "report")
    md = (tmp_path / "report" / "tables.md").read_text()
    section = md.split("### Language-adapter fallbacks")[1]
    assert "| mnli | xnli | 1 | fr | en |" in section
    assert "| de |" not in section
