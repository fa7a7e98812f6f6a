"""Transferability estimation (xstilts/selection): LogME against closed forms, the
agreement metrics on hand-made cases, each format's features, and each estimator,
the evaluation and budget mode on a tiny grid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from rich.console import Console
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from xstilts.errors import XstiltsError
from xstilts.experiment.grid import parse_grid, plan_grid
from xstilts.formats import get_format
from xstilts.selection import agreement
from xstilts.selection.budget import budget_plan, narrowed
from xstilts.selection.features import labelled_features, sequence_embeddings
from xstilts.selection.logme import fit_column, log_evidence, logme, spectrum
from xstilts.selection.select import estimates_path, rank_grid
from xstilts.selection.settings import SelectionSettings
from xstilts.tasks.spec import TaskSpec

# -- LogME ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(40, 5), (6, 20), (12, 12)])
def test_evidence_matches_the_marginal_likelihood_of_the_model(n: int, d: int) -> None:
    """y ~ N(0, I/beta + FF'/alpha) is the model LogME's evidence integrates w out of."""
    rng = np.random.default_rng(n + d)
    features, y = rng.normal(size=(n, d)), rng.normal(size=n)
    spec, projector = spectrum(features)
    for alpha, beta in [(1.0, 1.0), (0.3, 2.5), (7.0, 0.1)]:
        covariance = np.eye(n) / beta + features @ features.T / alpha
        direct = multivariate_normal(np.zeros(n), covariance).logpdf(y)
        ours = log_evidence(spec, projector @ y, float(y @ y), alpha, beta)
        assert ours == pytest.approx(direct, rel=1e-9, abs=1e-9)


def test_the_fixed_point_reaches_the_maximum_evidence() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 8))
    y = features @ rng.normal(size=8) + 0.5 * rng.normal(size=60)
    spec, projector = spectrum(features)
    z, norm2 = projector @ y, float(y @ y)
    fit = fit_column(spec, z, norm2, max_iterations=500, tolerance=1e-12)

    def negative(log_params: np.ndarray) -> float:
        return -log_evidence(spec, z, norm2, *np.exp(log_params)) / spec.n

    best = minimize(negative, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10})
    assert fit.evidence == pytest.approx(-best.fun, abs=1e-7)
    # the paper's settings (at most 11 updates, 1e-3) get there too on such data
    assert fit_column(spec, z, norm2).evidence == pytest.approx(-best.fun, abs=1e-4)


def test_features_that_determine_the_labels_beat_noise() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=300)
    exact = np.eye(3)[labels] + 0.01 * rng.normal(size=(300, 3))
    noise = rng.normal(size=(300, 3))
    half = np.where(rng.random(300)[:, None] < 0.5, exact, noise)
    assert logme(exact, labels) > logme(half, labels) > logme(noise, labels)


def test_logme_invariances() -> None:
    """A rotation of the features (the prior is isotropic), a permutation of the
    examples or of the class names, and (at the optimum) a rescaling of the features
    leave LogME unchanged."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=120)
    features = rng.normal(size=(120, 10)) + np.eye(4)[labels] @ rng.normal(size=(4, 10))
    score = logme(features, labels)
    rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert logme(features @ rotation, labels) == pytest.approx(score, abs=1e-9)
    order = rng.permutation(120)
    assert logme(features[order], labels[order]) == pytest.approx(score, abs=1e-9)
    assert logme(features, (labels + 1) % 4) == pytest.approx(score, abs=1e-9)
    assert logme(features, np.eye(4)[labels]) == pytest.approx(score, abs=1e-12)
    tight = {"max_iterations": 1000, "tolerance": 1e-13}
    assert logme(features * 25.0, labels, **tight) == pytest.approx(
        logme(features, labels, **tight), abs=1e-8
    )


def test_logme_rejects_mismatched_targets() -> None:
    with pytest.raises(ValueError, match="target rows"):
        logme(np.zeros((5, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="integer class"):
        logme(np.zeros((5, 2)), np.zeros(5))


# -- agreement with measured scores ---------------------------------------------------------


def test_agreement_metrics_on_hand_cases() -> None:
    measured = [70.0, 80.0, 60.0, 75.0]
    perfect = [0.7, 0.8, 0.6, 0.75]
    assert agreement.scores(perfect, measured) == {
        "spearman": pytest.approx(1.0),
        "ndcg@3": pytest.approx(1.0),
        "regret@1": 0.0,
        "regret@3": 0.0,
    }
    reversed_ = [-v for v in perfect]
    found = agreement.scores(reversed_, measured)
    assert found["spearman"] == pytest.approx(-1.0)
    assert found["regret@1"] == pytest.approx(20.0)  # picks the 60
    assert found["regret@3"] == pytest.approx(5.0)  # best of 60, 70, 75
    # gains above the worst (60): predicted order 60, 70, 75 against ideal 80, 75, 70
    dcg = 0 / 1 + 10 / math.log2(3) + 15 / 2
    ideal = 20 / 1 + 15 / math.log2(3) + 10 / 2
    assert found["ndcg@3"] == pytest.approx(dcg / ideal)
    # an unscored option ranks below every scored one
    assert agreement.order([0.2, None, 0.9]) == [2, 0, 1]


def test_random_baseline_is_the_expectation_over_orders() -> None:
    measured = [1.0, 4.0, 2.0]
    found = agreement.random_scores(measured)
    assert found["regret@1"] == pytest.approx(np.mean([4 - m for m in measured]))
    assert found["regret@3"] == 0.0
    assert found["spearman"] == pytest.approx(0.0)


# -- features per format on the tiny encoder --------------------------------------------------


def _features(fmt_name: str, spec: TaskSpec, rows: list[dict[str, Any]], tokenizer):
    fmt = get_format(fmt_name)
    check = fmt.check_row(spec)
    checked = [check(dict(row)) for row in rows]
    batch = {key: [row[key] for row in checked] for key in checked[0]}
    encoded = fmt.encode(
        batch, list(range(len(rows))), tokenizer=tokenizer, spec=spec, max_length=48, training=True
    )
    return fmt, datasets.Dataset.from_dict(encoded)


def test_classification_rows_are_examples_with_one_hot_classes(tokenizer, encoder) -> None:
    spec = TaskSpec(name="pairs", family="nli", format="classification", labels=["a", "b", "c"])
    rows = [{"text_a": f"sentence {i}", "text_b": "other", "label": i % 3} for i in range(7)]
    fmt, features = _features("classification", spec, rows, tokenizer)
    found = labelled_features(fmt, encoder, features, tokenizer.pad_token_id, task="pairs")
    assert found.features.shape == (7, encoder.config.hidden_size)
    assert found.targets.shape == (7, 3)
    assert sorted(found.targets.sum(0)) == [2, 2, 3]


def test_multiple_choice_rows_are_choices_with_the_gold_one_marked(tokenizer, encoder) -> None:
    spec = TaskSpec(name="mc", family="commonsense", format="multiple_choice", labels=["0", "1"])
    rows = [
        {"context": f"premise {i}", "question": "why", "choices": ["one", "two"], "label": i % 2}
        for i in range(5)
    ]
    fmt, features = _features("multiple_choice", spec, rows, tokenizer)
    found = labelled_features(fmt, encoder, features, tokenizer.pad_token_id, task="mc")
    assert found.features.shape[0] == 10 and found.targets.shape == (10, 1)
    assert found.targets.sum() == 5


def test_tagging_rows_are_words(tokenizer, encoder) -> None:
    spec = TaskSpec(name="pos", family="syntax", format="tagging", labels=["N", "V", "X"])
    rows = [
        {"tokens": ["dogs", "bark", "loudly"], "tags": ["N", "V", "X"]},
        {"tokens": ["unbelievably", "cats"], "tags": ["X", "N"]},
    ]
    fmt, features = _features("tagging", spec, rows, tokenizer)
    found = labelled_features(fmt, encoder, features, tokenizer.pad_token_id, task="pos")
    assert found.features.shape[0] == 5  # one row per word, not per sub-word
    assert found.targets.sum(0).tolist() == [2, 1, 2]


def test_span_qa_rows_are_tokens_with_start_and_end_marks(tokenizer, encoder) -> None:
    spec = TaskSpec(name="qa", family="qa", format="span_qa", metric="squad")
    context = "The capital of France is Paris, a large city."
    rows = [
        {
            "context": context,
            "question": "What is the capital?",
            "answers": {"text": ["Paris"], "answer_start": [context.index("Paris")]},
        }
    ] * 3
    fmt, features = _features("span_qa", spec, rows, tokenizer)
    found = labelled_features(fmt, encoder, features, tokenizer.pad_token_id, task="qa")
    tokens = sum(len(ids) for ids in features["input_ids"])
    assert found.features.shape == (tokens, encoder.config.hidden_size)
    assert found.targets.shape == (tokens, 2)
    assert found.targets.sum(0).tolist() == [len(features), len(features)]  # one per window


def test_formats_without_labels_are_an_error_naming_the_task(tokenizer, encoder) -> None:
    fmt = get_format("retrieval")
    with pytest.raises(XstiltsError, match=r"task 'tatoeba'.*semb"):
        labelled_features(fmt, encoder, datasets.Dataset.from_dict({}), 1, task="tatoeba")


def test_sequence_embeddings_count_every_choice(tokenizer, encoder) -> None:
    spec = TaskSpec(name="mc", family="commonsense", format="multiple_choice", labels=["0", "1"])
    rows = [{"context": "a b", "question": None, "choices": ["c", "d e"], "label": 0}] * 3
    fmt, features = _features("multiple_choice", spec, rows, tokenizer)
    found = sequence_embeddings(fmt, encoder, features, tokenizer.pad_token_id)
    assert found.means.shape == (6, encoder.config.hidden_size)
    assert found.tokens.tolist().count(found.tokens.max()) == 3


# -- a tiny grid ----------------------------------------------------------------------------


def _tiny_grid(demo_data, feature_cache, **selection: Any) -> dict[str, Any]:
    data_dir, task_file = demo_data
    training = {
        "learning_rate": 1e-3,
        "batch_size": 16,
        "epochs": 1,
        "max_train_examples": 64,
        "max_eval_examples": 32,
    }
    grid: dict[str, Any] = {
        "name": "tiny-selection",
        "grid": {
            "seeds": [1],
            "intermediate": {
                "baseline": None,
                "nli": {"tasks": ["demo_nli"], "training": training},
                "nli-small": {
                    "tasks": ["demo_nli"],
                    "training": {**training, "max_train_examples": 32},
                },
            },
            "targets": ["demo_paraphrase"],
        },
        "base": {
            "model": {"tiny": {}},
            "target": {"training": training},
            "evaluation": {"languages": ["en", "de"], "max_examples": 30},
            "data": {
                "source": "local",
                "data_dir": str(data_dir),
                "task_files": [str(task_file)],
                "cache_dir": str(feature_cache),
            },
        },
    }
    if selection:
        grid["selection"] = selection
    return grid


def test_each_estimator_ranks_every_option_and_reuses_its_estimates(
    demo_data, feature_cache, tmp_path, monkeypatch
) -> None:
    grid = parse_grid(_tiny_grid(demo_data, feature_cache), "test")
    out = tmp_path / "grid"
    settings = SelectionSettings(max_examples=48, fewshot_steps=2, fewshot_validation_examples=16)
    methods = ["logme", "semb", "textemb", "fewshot", "size"]
    groups, rankings = rank_grid(grid, out, methods, settings)
    # logme needed the intermediate phases: trained on demand, through the pipeline
    assert len(list((out / "intermediate").glob("*/best"))) == 2
    assert [g.target for g in groups] == ["demo_paraphrase"]
    for method in methods:
        (ranking,) = rankings[method]
        assert sorted(r.option for r in ranking.ranked) == ["baseline", "nli", "nli-small"]
        values = {r.option: r.estimate.value for r in ranking.ranked}
        assert all(r.estimate.seconds >= 0 for r in ranking.ranked)
        if method in ("semb", "textemb"):
            assert values["baseline"] is None and ranking.ranked[-1].option == "baseline"
            assert -1.0 <= values["nli"] <= 1.0 + 1e-9
        else:
            assert all(v is not None and np.isfinite(v) for v in values.values())
    sizes = {r.option: r.estimate.value for r in rankings["size"][0].ranked}
    assert sizes == {"baseline": 0.0, "nli": 64.0, "nli-small": 32.0}
    fewshot = {r.option: r.estimate.value for r in rankings["fewshot"][0].ranked}
    assert all(0.0 <= v <= 100.0 for v in fewshot.values())  # type: ignore[operator]
    assert not (out / "selection" / "scratch").exists() or not any(
        (out / "selection" / "scratch").iterdir()
    )

    # asked again: every estimate comes from disk
    from xstilts.selection import select

    def fail(*args: Any) -> None:
        pytest.fail("an estimate was computed again")

    monkeypatch.setattr(select, "ESTIMATORS", dict.fromkeys(methods, fail))
    _, again = rank_grid(grid, out, methods, settings)
    for method in methods:
        assert [r.option for r in again[method][0].ranked] == [
            r.option for r in rankings[method][0].ranked
        ]
    assert len(json.loads(estimates_path(out).read_text())) == 3 * len(methods)


def test_select_evaluate_on_a_finished_grid(demo_data, feature_cache, tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from xstilts.cli import app
    from xstilts.experiment.grid_runner import run_grid

    payload = _tiny_grid(demo_data, feature_cache)
    grid = parse_grid(payload, "test")
    out = tmp_path / "grid"
    assert all(r.ok for r in run_grid(grid, out, Console(quiet=True)))
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(payload))
    result = CliRunner().invoke(
        app,
        ["select", str(config), "--out", str(out), "--method", "logme,semb", "--evaluate",
         "--max-examples", "48"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # (a narrow console may fold the table's other cells)
    for expected in ("logme: demo_paraphrase", "semb: demo_paraphrase", "regret@1", "ndcg@3"):
        assert expected in result.output
    saved = json.loads((out / "selection" / "evaluation.json").read_text())
    assert set(saved) == {"logme", "semb", "size", "random"}
    (target,) = saved["logme"]["targets"]
    assert target["options"] == ["baseline", "nli", "nli-small"]
    measured = [m["zero-shot"] for m in target["measured"]]
    results = [json.loads(p.read_text()) for p in (out / "runs").glob("*/results.json")]
    by_option = {r["intermediate_option"]: r["average_zero_shot"] for r in results}
    assert measured == [by_option[o] for o in target["options"]]
    assert target["runs_seconds"] > 0 and target["cost_seconds"] > 0
    assert saved["logme"]["cost_share"] == pytest.approx(
        target["cost_seconds"] / target["runs_seconds"]
    )

    # the report shows predicted against measured
    from xstilts.report import write_report

    written = write_report(out, tmp_path / "report")
    names = {Path(p).name for p in written}
    assert "selection.md" in names and "selection.png" in names


def test_budget_mode_plans_only_the_top_k_and_the_baseline(
    demo_data, feature_cache, tmp_path
) -> None:
    payload = _tiny_grid(demo_data, feature_cache, method="size", top_k=1)
    grid = parse_grid(payload, "test")
    out = tmp_path / "grid"
    plan = plan_grid(grid, out)
    console = Console(record=True, width=200)
    # a dry run without estimates tells what it saves at least
    assert budget_plan(grid, plan, out, console, dry_run=True) is plan
    assert "saves at least" in console.export_text()
    kept = budget_plan(grid, plan, out, console)
    assert sorted(r.option for r in kept.targets) == ["baseline", "nli"]  # size: 64 > 32
    assert [r.option for r in kept.intermediate] == ["nli"]  # nli-small's is never trained
    assert "2 of 5 runs not trained" in console.export_text()
    # the dry run now plans from the choice on disk
    again = budget_plan(grid, plan, out, Console(quiet=True), dry_run=True)
    assert [r.name for r in again.runs] == [r.name for r in kept.runs]


def test_narrowed_plan_keeps_what_kept_runs_depend_on(demo_data, feature_cache, tmp_path) -> None:
    grid = parse_grid(_tiny_grid(demo_data, feature_cache), "test")
    plan = plan_grid(grid, tmp_path)
    kept = narrowed(plan, {"demo_paraphrase": {"nli-small"}})
    assert [r.option for r in kept.targets] == ["nli-small"]
    assert set(kept.targets[0].depends_on) == {r.name for r in kept.intermediate}


def test_bad_selection_input_names_the_key(demo_data, feature_cache, tmp_path) -> None:
    with pytest.raises(XstiltsError, match="selection"):
        parse_grid(_tiny_grid(demo_data, feature_cache, method="magic"), "grid.yaml")
    with pytest.raises(XstiltsError, match="--method magic"):
        grid = parse_grid(_tiny_grid(demo_data, feature_cache), "test")
        rank_grid(grid, tmp_path, ["magic"], SelectionSettings())
