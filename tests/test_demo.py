"""The real demo's pieces that do not train: its grid, the levels it prints beside the
scores, and the summary (the demo itself runs in about five minutes; the README's
first command runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas
import pytest
from rich.console import Console

import xstilts
from xstilts.demo.real import (
    BASELINE,
    CANDIDATES,
    ESTIMATORS,
    TARGET,
    ZERO_SHOT,
    demo_grid,
    majority_levels,
    measured_scores,
    print_summary,
    write_demo_data,
)
from xstilts.samples import XQUAD_LANGUAGES
from xstilts.selection.estimators import Estimate
from xstilts.selection.result import SelectionResult
from xstilts.selection.select import Ranked, TargetRanking


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    return write_demo_data(tmp_path_factory.mktemp("demo"))


def test_the_demo_grid_plans_each_option_once_against_the_target(demo_data, tmp_path):
    planned = xstilts.run_grid(demo_grid(demo_data), tmp_path / "out", dry_run=True).planned
    targets = [run for run in planned if run.kind == "target"]
    assert sorted(run.option for run in targets) == sorted([BASELINE, *CANDIDATES])
    assert {run.target for run in targets} == {TARGET}
    assert sorted(run.option for run in planned if run.kind == "intermediate") == sorted(CANDIDATES)


def test_majority_levels_count_the_labels_of_each_test_file(demo_data):
    levels = majority_levels(demo_data)
    for lang in XQUAD_LANGUAGES:
        path = demo_data.data_dir / TARGET / f"test-{lang}.jsonl"
        labels = [json.loads(line)["label"] for line in path.read_text("utf-8").splitlines()]
        share = max(labels.count(label) for label in set(labels)) / len(labels)
        assert levels[lang] == pytest.approx(100 * share)
        assert 50 <= levels[lang] < 60  # the pairs alternate their labels


def _frame(scores: dict[str, dict[str, float]]) -> pandas.DataFrame:
    rows = [
        {"option": option, "language": lang, "metric": metric, "value": value}
        for option, by_language in scores.items()
        for lang, value in by_language.items()
        for metric in ("score", "accuracy")
    ]
    rows.append({"option": BASELINE, "language": "en", "metric": "other", "value": -1.0})
    return pandas.DataFrame(rows)


def _selection(orders: dict[str, list[tuple[str, float | None]]]) -> SelectionResult:
    rankings = {
        method: [
            TargetRanking(
                TARGET, method, [Ranked(option, Estimate(value, 1.0)) for option, value in order]
            )
        ]
        for method, order in orders.items()
    }
    return SelectionResult(rankings)


def test_the_summary_ranks_the_measured_options_and_prints_each_prediction():
    scores = {
        BASELINE: {"en": 80.0, "de": 75.0, "zh": 80.0, "ar": 76.0},
        "qa": {"en": 82.0, "de": 81.0, "zh": 82.0, "ar": 79.0},
        "pos": {"en": 79.0, "de": 76.0, "zh": 71.0, "ar": 70.0},
    }
    assert measured_scores(_frame(scores)) == scores
    selection = _selection(
        {
            "logme": [("pos", -0.70), ("qa", -0.71), (BASELINE, -0.73)],
            "semb": [("qa", 0.99), ("pos", 0.96), (BASELINE, None)],
        }
    )
    assert set(ESTIMATORS) == {"logme", "semb"}
    console = Console(record=True, width=200)
    levels = {lang: 50.0 for lang in XQUAD_LANGUAGES}
    print_summary(console, scores, levels, selection)
    text = console.export_text()
    qa_average = sum(scores["qa"][lang] for lang in ZERO_SHOT) / 3
    measured = f"qa {qa_average:.1f} > baseline 77.0 > pos 72.3"
    assert f"Measured ranking (zero-shot average): {measured}" in text
    assert "; 3 s): pos > qa > baseline: NOT the measured order" in text
    assert f"; 3 s): qa > pos (cannot score: {BASELINE}): the measured order" in text
    assert "at least 25.0 points above the majority label" in text
    assert "81.0 (+6.0)" in text  # German after QA, against the baseline


def test_a_checked_selection_prints_each_estimators_cost_share():
    scores = {
        option: {lang: 60.0 for lang in XQUAD_LANGUAGES} for option in (BASELINE, "qa", "pos")
    }
    orders = {m: [("qa", 1.0), ("pos", 0.5), (BASELINE, 0.0)] for m in ESTIMATORS}
    checked = SelectionResult(
        _selection(orders).rankings, evaluation={"logme": {"cost_share": 0.031}}
    )
    console = Console(record=True, width=200)
    print_summary(console, scores, {lang: 50.0 for lang in XQUAD_LANGUAGES}, checked)
    text = console.export_text()
    assert "3 s, 3.1% of the target trainings): qa > pos > baseline" in text
    assert "; 3 s): qa > pos > baseline" in text  # semb: not in the evaluation


def test_a_baseline_at_the_majority_level_is_called_so():
    flat = {lang: 50.0 for lang in XQUAD_LANGUAGES}
    scores = {BASELINE: flat, "qa": flat, "pos": flat}
    selection = _selection({m: [(BASELINE, 0.0)] for m in ESTIMATORS})
    console = Console(record=True, width=200)
    print_summary(console, scores, dict(flat), selection)
    assert "NOT above the majority label" in console.export_text()


def test_demo_data_is_the_shipped_stand_ins(demo_data):
    assert (demo_data.data_dir / TARGET / "train-en.jsonl").is_file()
    assert Path(demo_data.task_file).is_file()
