"""Paper reports of a grid: numbers, significance and the files written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from xstilts.errors import XstiltsError
from xstilts.report import write_report
from xstilts.report.data import load_grid, option_family
from xstilts.report.render import latex_escape
from xstilts.report.significance import paired_bootstrap
from xstilts.report.tables import family_rows, main_rows, xtreme_score

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


def _write(grid: Path, tasks: list[str], target: str, seed: int, examples=None, bonus=None):
    option = "+".join(tasks) or "baseline"
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
    if examples is not None:
        payload["intermediate_option"] = option
        payload["intermediate_max_train_examples"] = examples
    (run_dir / "results.json").write_text(json.dumps(payload))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    grid = tmp_path / "my_grid"
    for tasks in ([], ["mnli"], ["qqp"], ["anli_plus"]):
        for target in ("xnli", "xquad"):
            for seed in (1, 2):
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
    return scores, {r.option.label: r for r in main_rows(scores, resamples=2000)}


def test_main_table_numbers(grid: Path):
    scores, rows = _rows(grid)
    assert scores.targets == ["xnli", "xquad"]
    assert [o.label for o in scores.options] == ["baseline", "anli_plus", "mnli", "qqp"]
    base = rows["baseline"].cells
    # xnli: languages average 74 + seed -> 75, 76; std with ddof=1 of two values
    assert base["xnli"].mean == pytest.approx(75.5)
    assert base["xnli"].std == pytest.approx(2**0.5 / 2)
    assert base["xnli"].n == 2
    assert base["xnli"].diff is None
    # xquad: the score is (EM+F1)/2 averaged over languages: 60.5 + seed
    assert base["xquad"].mean == pytest.approx(62.0)
    mnli = rows["mnli"].cells
    assert mnli["xnli"].mean == pytest.approx(80.5)
    assert mnli["xquad"].mean == pytest.approx(67.0)
    assert mnli["xquad"].diff == pytest.approx(5.0)
    assert rows["anli_plus"].cells["xnli"].diff == pytest.approx(3.0)
    assert rows["mnli"].average == pytest.approx((80.5 + 67.0) / 2)
    assert rows["mnli"].average_diff == pytest.approx(5.0)


def test_significance(grid: Path):
    _, rows = _rows(grid)
    for target in ("xnli", "xquad"):
        assert rows["mnli"].cells[target].p < 0.05
        assert rows["qqp"].cells[target].diff == pytest.approx(0.0)
        assert rows["qqp"].cells[target].p == pytest.approx(1.0)


def test_paired_bootstrap_is_seeded_and_paired():
    keys = [(s, lg) for s in (1, 2) for lg in ("a", "b", "c")]
    base = {key: float(i) for i, key in enumerate(keys)}
    noisy = {k: v + (1.0 if i % 2 else -1.0) for i, (k, v) in enumerate(base.items())}
    assert paired_bootstrap(base, noisy) == paired_bootstrap(base, noisy)
    assert paired_bootstrap(base, noisy) > 0.05
    assert paired_bootstrap(base, {("x", "y"): 1.0}) is None
    # too few pairs to test: two of the same sign would always look significant
    shifted = {key: base[key] + 1.0 for key in keys[:2]}
    assert paired_bootstrap(base, shifted) is None


def test_best_per_target_and_families(grid: Path):
    scores, rows = _rows(grid)
    score = xtreme_score(list(rows.values()), scores)
    assert score.best_option == {"xnli": "mnli", "xquad": "anli_plus"}  # by validation
    assert score.best_score == pytest.approx((80.5 + 65.0) / 2)
    assert score.baseline_score == pytest.approx((75.5 + 62.0) / 2)
    families = {
        f.family: f for f in family_rows(list(rows.values()), scores.targets, scores, resamples=500)
    }
    assert set(families) == {"baseline", "nli", "paraphrase"}
    assert families["nli"].options == ["anli_plus", "mnli"]
    assert families["nli"].diffs["xnli"] == pytest.approx(4.0)
    assert families["nli"].means["xquad"] == pytest.approx((65.0 + 67.0) / 2)
    assert families["paraphrase"].average_diff == pytest.approx(0.0)
    assert families["nli"].spreads["xnli"] == pytest.approx(2**0.5)  # 78.5 and 80.5
    assert families["nli"].p["xnli"] < 0.05
    assert families["paraphrase"].p["xnli"] == 1.0
    assert families["paraphrase"].spreads["xnli"] is None  # one option
    assert option_family(("mnli", "squad")) == "multi"
    assert option_family(("mnli", "anli_plus")) == "nli"


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
    assert float(main[("mnli", "xquad")]["mean"]) == pytest.approx(67.0)
    assert float(main[("mnli", "xquad")]["p_value"]) < 0.05

    md = (out / "tables.md").read_text()
    assert "| mnli | nli | 80.5 ± 0.7 (+5.0\\*)" in md
    assert "| qqp | paraphrase | 75.5 ± 0.7 (+0.0) |" in md
    tex = (out / "tables.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "anli\\_plus" in tex and "anli_plus" not in tex.replace("anli\\_plus", "")
    assert latex_escape("a_b & 5%") == "a\\_b \\& 5\\%"

    html = (out / "report.html").read_text()
    assert "<title>my_grid</title>" in html
    assert html.count("<table>") == 4  # main, XTREME score, families, robustness
    assert html.count("data:image/png;base64,") == 3
    assert "bootstrap" in html
    summary = html.split("<h2>Summary</h2>")[1].split("</ul>")[0]
    assert "xnli: the highest mean is mnli&#x27;s, 80.5, +5.0 against the baseline" in summary
    assert "on English validation (xnli mnli, xquad anli_plus)" in summary
    assert "XTREME-style score of 72.8 against the baseline&#x27;s 68.8 (+4.0)" in summary


def test_robustness_statistics_and_their_significance(grid: Path):
    from xstilts.report.robustness import robustness_rows

    rows = {(r.option.label, r.target): r for r in robustness_rows(load_grid(grid), resamples=500)}
    mnli, base = rows[("mnli", "xnli")], rows[("baseline", "xnli")]
    assert base.values["worst"] == pytest.approx(71.5) and base.worst_language == "de"
    assert mnli.values["worst"] == pytest.approx(76.0) and mnli.worst_language == "de"
    assert mnli.diffs["worst"] == pytest.approx(4.5)
    assert mnli.values["seed_sd"] == pytest.approx(0.7071, abs=1e-4)
    assert mnli.diffs["seed_sd"] == pytest.approx(0.0) and mnli.p["seed_sd"] == 1.0
    assert base.values["gap"] == pytest.approx(9.0)
    assert mnli.diffs["gap"] == pytest.approx(0.75)
    assert mnli.p["mean"] is not None and mnli.p["mean"] < 0.05
    assert base.p == {} and base.diffs == {}


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
    f1 = {r.option.label: r for r in main_rows(load_grid(grid, "f1"), resamples=200)}
    mean_f1 = sum(f1 for _, f1 in XQUAD.values()) / len(XQUAD)
    assert f1["full"].cells["xquad"].mean == pytest.approx(mean_f1 + 1.5)  # seeds 1, 2
    assert f1["seq_bn"].cells["xquad"].mean == pytest.approx(mean_f1 + 1.5 - 2.0)
    score = {r.option.label: r for r in main_rows(load_grid(grid), resamples=200)}
    assert score["full"].cells["xquad"].mean < f1["full"].cells["xquad"].mean  # (EM+F1)/2

    write_report(grid, tmp_path / "report", metric="f1", resamples=200)
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
