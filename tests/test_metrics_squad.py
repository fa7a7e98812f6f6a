"""SQuAD v1.1 EM/F1 (xquad, tydiqa) against hand-computed values and an oracle."""

from __future__ import annotations

import copy
import json
import random

import pytest

from tests.official_oracles import (
    SQUAD_STEPS as _ORACLE_STEPS,
)
from tests.official_oracles import (
    squad_em as _oracle_em,
)
from tests.official_oracles import (
    squad_evaluate as _oracle_evaluate,
)
from tests.official_oracles import (
    squad_f1 as _oracle_f1,
)
from tests.official_oracles import (
    squad_normalize as _oracle_normalize,
)
from xstilts.metrics.squad import normalize_squad_answer, squad_dataset_scores, squad_scores
from xstilts.samples import real_samples

XQUAD_EN = real_samples() / "xquad" / "xquad.en.json"


# --------------------------------------------------------------------------------------
# Random strings that exercise every step: case, ASCII and non-ASCII punctuation,
# articles as words and inside words, odd whitespace, characters whose lower() grows.
# --------------------------------------------------------------------------------------
_PIECES = [
    "the", "The", "THE", "a", "A", "an", "An", "theatre", "another", "ant", "cat",
    "Paris", "x", "İstanbul", "ß", "Ǆ", "1984", "", "'s", "(a)", "a.", "-the-",
    "«", "»", "、", "—", "“", "”", ".", ",", "!", "?", "$", "&", "_", "-", "'", '"',
]  # fmt: skip
_SEPARATORS = [" ", " ", " ", "", "  ", "\t", "\n", "\u00a0", "\u3000", "-", "_"]


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 7)):
        parts.append(rng.choice(_PIECES))
        parts.append(rng.choice(_SEPARATORS))
    return "".join(parts)


def _random_cases(seed: int, count: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        gold = [_random_text(rng) for _ in range(rng.randint(1, 3))]
        # Often build the prediction from a gold answer so that EM and F1 are not all 0.
        prediction = (
            _random_text(rng) if rng.random() < 0.4 else rng.choice(gold) + _random_text(rng)
        )
        cases.append((prediction, gold))
    return cases


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Quick, Brown-Fox!", "quick brownfox"),
        ("an apple a day", "apple day"),
        ("Theatre another ant", "theatre another ant"),  # articles only as whole words
        ("a.b", "ab"),  # punctuation goes before articles, so "a" is no longer a word
        ("(The) end", "end"),
        ("«Paris», 、Tokyo", "«paris» 、tokyo"),  # only ASCII punctuation is removed
        ("\tA\u00a0cat\n", "cat"),  # Unicode whitespace collapses too
        ("", ""),
        ("The", ""),
    ],
)
def test_normalisation(text: str, expected: str) -> None:
    assert normalize_squad_answer(text) == expected


def test_exact_match_and_partial_f1() -> None:
    scores = squad_scores(
        ["the Eiffel Tower", "big red dog"], [["Eiffel Tower."], ["red dog house"]]
    )
    # Question 1: EM 1, F1 1. Question 2: 2 shared tokens, P = R = 2/3, F1 = 2/3.
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_f1_counts_tokens_as_a_multiset() -> None:
    # overlap = min(2,1) for x + min(1,2) for y = 2; P = R = 2/3.
    assert squad_scores(["x x y"], [["x y y"]])["f1"] == pytest.approx(100 * 2 / 3)


def test_empty_prediction() -> None:
    assert squad_scores([""], [["Paris"]]) == {"exact_match": 0.0, "f1": 0.0}
    # An answer that normalises to nothing matches an empty prediction exactly, but
    # F1 is 0 because no token is shared: the official scorer behaves the same way.
    assert squad_scores([""], [["The!"]]) == {"exact_match": 100.0, "f1": 0.0}


def test_best_gold_answer_is_taken_for_each_metric_separately() -> None:
    # Any gold answer can give the maximum, independently for EM and F1.
    assert squad_scores(["New York"], [["New York City", "new york"]]) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }
    # "New-York" normalises to "newyork" (no shared token); "New York City" gives
    # P = 1, R = 2/3, F1 = 0.8; no gold matches exactly.
    scores = squad_scores(["New York"], [["New-York", "New York City"]])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(80.0)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no questions"):
        squad_scores([], [])
    with pytest.raises(ValueError, match="no gold answer"):
        squad_scores(["a"], [[]])
    with pytest.raises(TypeError):
        squad_scores(["a"], ["a"])


# ---------------------------------------------------------------- oracle comparison


def test_random_strings_agree_with_the_oracle() -> None:
    cases = _random_cases(seed=20240611, count=400)
    for prediction, golds in cases:
        for text in [prediction, *golds]:
            assert normalize_squad_answer(text) == _oracle_normalize(text), repr(text)
        single = squad_scores([prediction], [golds])
        assert single["exact_match"] == pytest.approx(
            100.0 * max(_oracle_em(prediction, g) for g in golds), abs=1e-9
        )
        assert single["f1"] == pytest.approx(
            100.0 * max(_oracle_f1(prediction, g) for g in golds), abs=1e-9
        )
    dataset = [
        {
            "paragraphs": [
                {
                    "qas": [
                        {"id": f"q{i}", "answers": [{"text": g} for g in golds]}
                        for i, (_, golds) in enumerate(cases)
                    ]
                }
            ]
        }
    ]
    predictions = {f"q{i}": prediction for i, (prediction, _) in enumerate(cases) if i % 7}
    ours = squad_dataset_scores(predictions, dataset)
    theirs = _oracle_evaluate(dataset, predictions)
    assert 0 < ours["exact_match"] < 100 and 0 < ours["f1"] < 100
    for key in ("exact_match", "f1"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)


def test_random_corpus_detects_a_missing_or_reordered_step() -> None:
    """The oracle comparison above would fail if any step were dropped or misordered."""
    texts = [t for prediction, golds in _random_cases(20240611, 400) for t in [prediction, *golds]]
    lower, punc, articles, space = _ORACLE_STEPS
    variants = {
        "no lower": [punc, articles, space],
        "no punctuation": [lower, articles, space],
        "no articles": [lower, punc, space],
        "no whitespace fix": [lower, punc, articles],
        "articles before punctuation": [lower, articles, punc, space],
        "lower last": [punc, articles, space, lower],
    }
    for name, steps in variants.items():
        assert any(_oracle_normalize(t, steps) != _oracle_normalize(t) for t in texts), name


# ---------------------------------------------------------------- real XQuAD file


@pytest.fixture(scope="module")
def xquad_en() -> dict:
    with XQUAD_EN.open(encoding="utf-8") as f:
        return json.load(f)


def _questions(dataset: dict) -> list[dict]:
    return [qa for article in dataset["data"] for p in article["paragraphs"] for qa in p["qas"]]


def test_xquad_first_gold_answer_scores_100(xquad_en: dict) -> None:
    predictions = {qa["id"]: qa["answers"][0]["text"] for qa in _questions(xquad_en)}
    assert len(predictions) == 1190
    assert squad_dataset_scores(predictions, xquad_en["data"]) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }
    # The whole file dict is accepted too, as XTREME's reader accepts it.
    assert squad_dataset_scores(predictions, xquad_en) == {"exact_match": 100.0, "f1": 100.0}


def test_xquad_empty_predictions_score_0(xquad_en: dict) -> None:
    predictions = {qa["id"]: "" for qa in _questions(xquad_en)}
    assert squad_dataset_scores(predictions, xquad_en["data"]) == {"exact_match": 0.0, "f1": 0.0}


def test_xquad_missing_question_scores_0_silently(xquad_en: dict, capsys) -> None:
    questions = _questions(xquad_en)
    predictions = {qa["id"]: qa["answers"][0]["text"] for qa in questions[1:]}
    predictions["not-a-question-id"] = "ignored"
    scores = squad_dataset_scores(predictions, xquad_en["data"])
    expected = 100.0 * (len(questions) - 1) / len(questions)
    assert scores["exact_match"] == pytest.approx(expected, abs=1e-9)
    assert scores["f1"] == pytest.approx(expected, abs=1e-9)
    assert capsys.readouterr() == ("", "")
    assert scores == pytest.approx(_oracle_evaluate(xquad_en["data"], predictions), abs=1e-9)


def test_xquad_partial_predictions_agree_with_the_oracle(xquad_en: dict) -> None:
    rng = random.Random(7)
    predictions = {}
    for qa in _questions(xquad_en):
        gold = qa["answers"][0]["text"]
        words = gold.split()
        choice = rng.random()
        if choice < 0.3:
            predictions[qa["id"]] = " ".join(words[: max(1, len(words) // 2)])
        elif choice < 0.6:
            predictions[qa["id"]] = "the " + gold + ", " + rng.choice(["it", "a", "year"])
        elif choice < 0.9:
            predictions[qa["id"]] = gold.upper()
    data = copy.deepcopy(xquad_en["data"])
    ours = squad_dataset_scores(predictions, data)
    theirs = _oracle_evaluate(data, predictions)
    for key in ("exact_match", "f1"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)


def test_squad_v2_scores_empty_answers_as_the_official_v2_scorer():
    from xstilts.metrics.squad import squad_v2_scores

    # unanswerable question: predicting "" is right (v1.1 would give F1 0)
    assert squad_v2_scores([""], [[]]) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_v2_scores(["Paris"], [[]]) == {"exact_match": 0.0, "f1": 0.0}
    # gold answers that normalise to nothing are dropped, leaving the real one
    assert squad_v2_scores(["the tower"], [["The!", "tower"]]) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }
    # an empty prediction for an answerable question scores 0 on both
    assert squad_v2_scores([""], [["Eiffel tower"]]) == {"exact_match": 0.0, "f1": 0.0}
    # otherwise it agrees with v1.1
    scores = squad_v2_scores(["big red tower"], [["the red tower"]])
    assert scores["exact_match"] == 0.0
    assert abs(scores["f1"] - 100 * 0.8) < 1e-9
