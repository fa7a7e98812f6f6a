"""The metric registry: every task-spec name resolves and reports its main key."""

from __future__ import annotations

import pytest

from xstilts.errors import XstiltsError
from xstilts.metrics import METRICS, Metric, get_metric
from xstilts.metrics.classification import accuracy

SAMPLES = {
    "accuracy": (["a", "b"], ["a", "c"]),
    "squad": (["the cat"], [["Cat"]]),
    "mlm_accuracy": ([1, 2], [2, 2]),
    "squad_v2": (["the cat"], [["Cat"]]),
    "mlqa": (["北京"], [["北京。"]]),
    "seqeval": ([["B-PER", "O"]], [["B-PER", "O"]]),
    "token_accuracy": ([["N", "(S\\NP)/NP"]], [["N", "NP"]]),
    "bucc_f1": ({("s1", "t1")}, {("s1", "t1")}),
    "tatoeba_accuracy": ([0, 1], [0, 1]),
    "map@20": ([["a", "b"]], [{"a"}]),
}


def test_registered_names() -> None:
    assert set(METRICS) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_metric_scores_and_has_its_main_key(name: str) -> None:
    metric = get_metric(name)
    assert metric.name == name
    extra = {"language": "zh"} if metric.needs_language else {}
    scores = metric.score(*SAMPLES[name], **extra)
    assert metric.main_key in scores
    assert all(isinstance(value, float) for value in scores.values())


def test_only_mlqa_needs_a_language() -> None:
    assert [name for name, m in METRICS.items() if m.needs_language] == ["mlqa"]
    with pytest.raises(TypeError):
        get_metric("mlqa").score(["a"], [["a"]])


def test_accuracy_entry_is_unchanged() -> None:
    metric = get_metric("accuracy")
    assert metric == Metric("accuracy", accuracy, "accuracy")
    assert metric.needs_language is False
    assert metric.score(["a", "b"], ["a", "c"]) == {"accuracy": 50.0}


def test_unknown_metric() -> None:
    with pytest.raises(XstiltsError, match="unknown metric 'bleu'"):
        get_metric("bleu")
