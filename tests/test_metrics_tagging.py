"""seqeval F1 (panx, udpos) and token accuracy, checked against seqeval itself."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from xstilts.metrics.tagging import seqeval_scores, token_accuracy
from xstilts.samples import real_samples

EN_EWT_DEV = real_samples() / "udpos" / "en_ewt-ud-dev.conllu"
UPOS = [
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
    "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
]  # fmt: skip


def _read_upos(path: Path, limit: int) -> list[list[str]]:
    """UPOS column (4th) of the first ``limit`` sentences; multiword and empty nodes skipped."""
    sentences: list[list[str]] = []
    current: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if current:
                    sentences.append(current)
                    current = []
                    if len(sentences) == limit:
                        break
                continue
            if line.startswith("#"):
                continue
            columns = line.split("\t")
            if "-" in columns[0] or "." in columns[0]:
                continue
            current.append(columns[3])
    return sentences


@pytest.fixture(scope="module")
def real_upos() -> tuple[list[list[str]], list[list[str]]]:
    """(predicted, gold): 150 real EWT dev sentences, 15% of tags replaced at random."""
    gold = _read_upos(EN_EWT_DEV, 150)
    rng = random.Random(13)
    predicted = [[rng.choice(UPOS) if rng.random() < 0.15 else tag for tag in s] for s in gold]
    return predicted, gold


def _seqeval_directly(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """What XTREME's evaluate.py computes: seqeval defaults, gold first, times 100."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "f1": f1_score(gold, predicted) * 100,
            "precision": precision_score(gold, predicted) * 100,
            "recall": recall_score(gold, predicted) * 100,
        }


def test_real_upos_matches_seqeval_and_differs_from_token_accuracy(real_upos) -> None:
    predicted, gold = real_upos
    assert len(gold) == 150 and sum(map(len, gold)) > 1500
    scores = seqeval_scores(predicted, gold)
    expected = _seqeval_directly(predicted, gold)
    for key in ("f1", "precision", "recall"):
        assert scores[key] == pytest.approx(expected[key], abs=1e-9)
    pairs = [
        pair for ps, gs in zip(predicted, gold, strict=True) for pair in zip(ps, gs, strict=True)
    ]
    correct = sum(p == g for p, g in pairs)
    accuracy = 100.0 * correct / sum(map(len, gold))
    assert scores["token_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    # seqeval chunks raw UPOS tags, so its F1 is not token accuracy.
    assert abs(scores["f1"] - scores["token_accuracy"]) > 1.0
    assert set(scores) == {"f1", "precision", "recall", "token_accuracy"}


def test_real_upos_gold_against_itself(real_upos) -> None:
    _, gold = real_upos
    scores = seqeval_scores(gold, gold)
    assert scores == {"f1": 100.0, "precision": 100.0, "recall": 100.0, "token_accuracy": 100.0}


def test_runs_of_equal_upos_tags_merge_into_one_chunk() -> None:
    # gold chunks: NOUN[0-1], VERB[2]; predicted chunks: NOUN[0], VERB[1-2]; none equal.
    scores = seqeval_scores([["NOUN", "VERB", "VERB"]], [["NOUN", "NOUN", "VERB"]])
    assert scores["f1"] == 0.0
    assert scores["token_accuracy"] == pytest.approx(200 / 3)


def test_bio_tags() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG"]]
    # 3 gold entities, 2 predicted, both correct: P = 1, R = 2/3, F1 = 0.8.
    scores = seqeval_scores(predicted, gold)
    assert scores["precision"] == pytest.approx(100.0)
    assert scores["recall"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(80.0)
    assert scores["token_accuracy"] == pytest.approx(500 / 6)
    assert token_accuracy(predicted, gold) == {"token_accuracy": pytest.approx(500 / 6)}


def test_non_bio_warnings_are_silenced() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqeval_scores([["NOUN", "PUNCT"]], [["NOUN", "VERB"]])
    assert not [w for w in caught if "NE tag" in str(w.message)]


def test_tuples_are_accepted() -> None:
    assert seqeval_scores([("B-PER", "O")], [("B-PER", "O")])["f1"] == 100.0


def test_length_mismatch_names_the_sentence() -> None:
    with pytest.raises(ValueError, match="sentence 1 has 1 predicted tags but 2 gold tags"):
        seqeval_scores([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="1 predicted sentences but 2 gold"):
        seqeval_scores([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="no sentences"):
        seqeval_scores([], [])
