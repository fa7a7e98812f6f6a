"""Classification and multiple-choice formats with the tiny tokenizer and encoder."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.formats.base import UNLABELLED, label_index, pad_nested
from xstilts.formats.classification import Classification
from xstilts.formats.multiple_choice import MultipleChoice
from xstilts.tasks import TaskSpec

NLI = ["entailment", "neutral", "contradiction"]


@pytest.fixture
def nli_spec() -> TaskSpec:
    return TaskSpec(name="nli", family="nli", format="classification", labels=NLI)


@pytest.fixture
def mc_spec() -> TaskSpec:
    return TaskSpec(
        name="mc", family="commonsense", format="multiple_choice", labels=["0", "1", "2", "3"]
    )


def _batch(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in rows[0]}


def test_get_format() -> None:
    assert isinstance(get_format("classification"), Classification)
    assert isinstance(get_format("multiple_choice"), MultipleChoice)
    with pytest.raises(XstiltsError, match=r"unknown task format 'span'.*classification"):
        get_format("span")


# ---------------------------------------------------------------------------
# check_row


def test_label_index() -> None:
    assert label_index("neutral", NLI) == 1
    assert label_index(2, NLI) == 2
    assert label_index(None, NLI) == UNLABELLED
    assert label_index("", NLI) == UNLABELLED
    assert label_index(1, ["0", "1"]) == 1  # the name "1" matches
    assert label_index("1", ["1", "0"]) == 0  # a name match wins over the index
    assert label_index(1, ["1", "0"]) == 0
    for bad in ("Neutral", "2", 3, -1, True, 1.0):
        with pytest.raises(ValueError, match="not one of the task's labels"):
            label_index(bad, NLI)


def test_classification_check_row(nli_spec: TaskSpec) -> None:
    check = Classification().check_row(nli_spec)
    assert check({"text_a": "a", "text_b": "b", "label": "contradiction"})["label"] == 2
    assert check({"text_a": "a", "label": 0})["label"] == 0
    assert check({"text_a": "a"})["label"] == UNLABELLED
    with pytest.raises(ValueError, match="'maybe'"):
        check({"text_a": "a", "label": "maybe"})
    with pytest.raises(ValueError, match="field 'text_b' must be text"):
        check({"text_a": "a", "text_b": 3, "label": 0})
    with pytest.raises(ValueError, match="field 'text_a' must be text"):
        check({"text_a": None, "label": 0})


def test_multiple_choice_check_row(mc_spec: TaskSpec) -> None:
    check = MultipleChoice().check_row(mc_spec)
    row = check({"context": "c", "choices": ["a", "b", "c", "d"], "label": "2"})
    assert row["label"] == 2
    assert check({"context": "c", "choices": ["a", "b", "c", "d"], "label": 3})["label"] == 3
    with pytest.raises(ValueError, match="expected 4 choices, found 3"):
        check({"context": "c", "choices": ["a", "b", "c"], "label": 0})
    with pytest.raises(ValueError, match="list of texts"):
        check({"context": "c", "choices": "abcd", "label": 0})
    with pytest.raises(ValueError, match="list of texts"):
        check({"context": "c", "choices": ["a", "b", None, "d"], "label": 0})
    with pytest.raises(ValueError, match="not one of"):
        check({"context": "c", "choices": ["a", "b", "c", "d"], "label": 4})
    letters = mc_spec.model_copy(update={"labels": list("ABCDE")})
    check = MultipleChoice().check_row(letters)
    assert check({"context": "c", "choices": list("vwxyz"), "label": "D"})["label"] == 3


# ---------------------------------------------------------------------------
# encode


def test_classification_encode_pair_has_two_segments(tokenizer, nli_spec: TaskSpec) -> None:
    batch = _batch(
        [
            {"text_a": "the cat sat", "text_b": "a cat", "label": 0},
            {"text_a": "the dog", "text_b": "no dog here at all", "label": 2},
        ]
    )
    features = Classification().encode(
        batch, [5, 6], tokenizer=tokenizer, spec=nli_spec, max_length=64
    )
    assert features["labels"] == [0, 2]
    assert features["example_index"] == [5, 6]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for ids, a, b in zip(features["input_ids"], batch["text_a"], batch["text_b"], strict=True):
        assert ids[0] == bos and ids[-1] == eos
        assert ids.count(eos) == 3  # <s> A </s></s> B </s>
        split = ids.index(eos)
        assert ids[split + 1] == eos
        first, second = ids[1:split], ids[split + 2 : -1]
        assert first == tokenizer(a, add_special_tokens=False)["input_ids"]
        assert second == tokenizer(b, add_special_tokens=False)["input_ids"]
    # stored unpadded and without a mask: the collator derives the mask from the lengths
    assert "attention_mask" not in features


def test_classification_encode_single_sentence(tokenizer, nli_spec: TaskSpec) -> None:
    features = Classification().encode(
        {"text_a": ["only one sentence"], "label": [1]},
        [0],
        tokenizer=tokenizer,
        spec=nli_spec,
        max_length=64,
    )
    [ids] = features["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 1
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_classification_truncation(tokenizer, nli_spec: TaskSpec) -> None:
    long_a = " ".join(["premise"] * 60)
    long_b = " ".join(["hypothesis"] * 60)
    features = Classification().encode(
        {"text_a": [long_a, "short"], "text_b": [long_b, "short"], "label": [0, 1]},
        [0, 1],
        tokenizer=tokenizer,
        spec=nli_spec,
        max_length=20,
    )
    long_ids, short_ids = features["input_ids"]
    assert len(long_ids) == 20
    assert long_ids.count(tokenizer.eos_token_id) == 3  # both segments survive truncation
    assert len(short_ids) < 20


def test_multiple_choice_encode(tokenizer, mc_spec: TaskSpec) -> None:
    rows = [
        {
            "context": "The man fell.",
            "question": "Why?",
            "choices": ["ice", "b", "c", "d"],
            "label": 0,
        },
        {"context": "It rained.", "question": None, "choices": ["w", "x", "y", "zz z"], "label": 3},
    ]
    features = MultipleChoice().encode(
        _batch(rows), [0, 1], tokenizer=tokenizer, spec=mc_spec, max_length=32
    )
    assert len(features["input_ids"]) == 2
    assert all(len(group) == 4 for group in features["input_ids"])
    assert "attention_mask" not in features
    assert features["labels"] == [0, 3]
    assert features["example_index"] == [0, 1]
    for row, group in zip(rows, features["input_ids"], strict=True):
        first = f"{row['context']} {row['question']}" if row["question"] else row["context"]
        for choice, ids in zip(row["choices"], group, strict=True):
            assert ids == tokenizer(first, choice)["input_ids"]


def test_multiple_choice_encode_without_question_column(tokenizer, mc_spec: TaskSpec) -> None:
    features = MultipleChoice().encode(
        {"context": ["ctx"], "choices": [["a", "b", "c", "d"]], "label": [1]},
        [0],
        tokenizer=tokenizer,
        spec=mc_spec,
        max_length=32,
    )
    assert features["input_ids"][0][2] == tokenizer("ctx", "c")["input_ids"]


def test_multiple_choice_truncation(tokenizer, mc_spec: TaskSpec) -> None:
    context = " ".join(["story"] * 100)
    features = MultipleChoice().encode(
        {"context": [context], "choices": [["a", "b", " ".join(["long"] * 50), "d"]], "label": [0]},
        [0],
        tokenizer=tokenizer,
        spec=mc_spec,
        max_length=24,
    )
    [group] = features["input_ids"]
    assert all(len(ids) <= 24 for ids in group)
    assert len(group[2]) == 24
    assert all(ids.count(tokenizer.eos_token_id) == 3 for ids in group)


# ---------------------------------------------------------------------------
# collate


def test_collate_pads_2d_to_longest_in_batch(tokenizer, nli_spec: TaskSpec) -> None:
    fmt = Classification()
    features = fmt.encode(
        {
            "text_a": ["a", "a much longer first sentence here"],
            "text_b": ["b", "c"],
            "label": [0, 2],
        },
        [0, 1],
        tokenizer=tokenizer,
        spec=nli_spec,
        max_length=128,
    )
    lengths = [len(ids) for ids in features["input_ids"]]
    batch = fmt.collate(features, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, max(lengths))
    assert max(lengths) < 128
    assert batch["input_ids"].dtype == torch.long
    short = int(np.argmin(lengths))
    assert batch["input_ids"][short, lengths[short] :].eq(tokenizer.pad_token_id).all()
    assert batch["attention_mask"][short].tolist() == [1] * lengths[short] + [0] * (
        max(lengths) - lengths[short]
    )
    assert batch["input_ids"][short, : lengths[short]].tolist() == features["input_ids"][short]
    assert batch["labels"].tolist() == [0, 2]
    assert "example_index" not in batch


def test_collate_pads_3d_to_longest_choice(tokenizer, mc_spec: TaskSpec) -> None:
    fmt = MultipleChoice()
    features = fmt.encode(
        {
            "context": ["c", "d"],
            "choices": [["a", "b", "c", "d"], ["w", "x", "y " * 9, "z"]],
            "label": [0, 1],
        },
        [0, 1],
        tokenizer=tokenizer,
        spec=mc_spec,
        max_length=128,
    )
    longest = max(len(ids) for group in features["input_ids"] for ids in group)
    batch = fmt.collate(features, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 4, longest)
    assert batch["attention_mask"].shape == (2, 4, longest)
    assert batch["labels"].tolist() == [0, 1]
    for i, group in enumerate(features["input_ids"]):
        for j, ids in enumerate(group):
            assert batch["input_ids"][i, j, : len(ids)].tolist() == ids
            assert batch["input_ids"][i, j, len(ids) :].eq(tokenizer.pad_token_id).all()
            assert int(batch["attention_mask"][i, j].sum()) == len(ids)


def test_pad_nested_rejects_ragged_choices() -> None:
    assert pad_nested([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    with pytest.raises(ValueError, match="as many choices"):
        pad_nested([[[1], [2]], [[3]]], 0)


# ---------------------------------------------------------------------------
# heads, forward, loss, backprop


def _classification_batch(tokenizer, spec):
    fmt = Classification()
    features = fmt.encode(
        {
            "text_a": ["one", "two words", "three more words"],
            "text_b": ["x", "y", "z"],
            "label": [0, 1, 2],
        },
        [0, 1, 2],
        tokenizer=tokenizer,
        spec=spec,
        max_length=32,
    )
    return fmt.collate(features, tokenizer.pad_token_id)


def _mc_batch(tokenizer, spec):
    fmt = MultipleChoice()
    features = fmt.encode(
        {
            "context": ["c one", "c two"],
            "choices": [list("abcd"), ["e", "f g", "h", "i j k"]],
            "label": [3, 1],
        },
        [0, 1],
        tokenizer=tokenizer,
        spec=spec,
        max_length=32,
    )
    return fmt.collate(features, tokenizer.pad_token_id)


@pytest.mark.parametrize("kind", ["classification", "multiple_choice"])
def test_forward_loss_and_backprop(tokenizer, encoder, nli_spec, mc_spec, kind: str) -> None:
    torch.manual_seed(0)
    if kind == "classification":
        fmt, spec, expected = Classification(), nli_spec, (3, 3)
        batch = _classification_batch(tokenizer, spec)
    else:
        fmt, spec, expected = MultipleChoice(), mc_spec, (2, 4)
        batch = _mc_batch(tokenizer, spec)
    head = fmt.build_head(spec, encoder)
    assert head.out.out_features == (3 if kind == "classification" else 1)
    assert head.dense.in_features == encoder.config.hidden_size
    outputs = fmt.forward(encoder, head, batch)
    assert outputs["logits"].shape == expected
    loss = fmt.loss(outputs, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    encoder.zero_grad(set_to_none=True)
    loss.backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    assert encoder.embeddings.word_embeddings.weight.grad is not None
    encoder.zero_grad(set_to_none=True)


def test_multiple_choice_scores_each_choice_independently(tokenizer, encoder, mc_spec) -> None:
    """Swapping two choices swaps their scores: each choice is encoded and scored on its own."""
    fmt = MultipleChoice()
    head = fmt.build_head(mc_spec, encoder).eval()
    choices = ["apples", "bananas are yellow", "cherry", "dates"]
    swapped = [choices[2], choices[1], choices[0], choices[3]]
    features = fmt.encode(
        {"context": ["fruit", "fruit"], "choices": [choices, swapped], "label": [0, 2]},
        [0, 1],
        tokenizer=tokenizer,
        spec=mc_spec,
        max_length=32,
    )
    with torch.no_grad():
        logits = fmt.forward(encoder, head, fmt.collate(features, tokenizer.pad_token_id))["logits"]
    assert torch.allclose(logits[1], logits[0][[2, 1, 0, 3]], atol=1e-5)


def test_padding_does_not_change_the_logits(tokenizer, encoder, nli_spec) -> None:
    fmt = Classification()
    head = fmt.build_head(nli_spec, encoder).eval()
    alone = fmt.encode(
        {"text_a": ["short"], "text_b": ["x"], "label": [0]},
        [0],
        tokenizer=tokenizer,
        spec=nli_spec,
        max_length=32,
    )
    padded = fmt.encode(
        {
            "text_a": ["short", "a much much longer sentence to pad against"],
            "text_b": ["x", "y"],
            "label": [0, 1],
        },
        [0, 1],
        tokenizer=tokenizer,
        spec=nli_spec,
        max_length=32,
    )
    with torch.no_grad():
        one = fmt.forward(encoder, head, fmt.collate(alone, tokenizer.pad_token_id))["logits"]
        two = fmt.forward(encoder, head, fmt.collate(padded, tokenizer.pad_token_id))["logits"]
    assert torch.allclose(one[0], two[0], atol=1e-5)


# ---------------------------------------------------------------------------
# predictions, rendering and scoring


def _outputs(rows: list[list[float]]) -> list[dict[str, np.ndarray]]:
    return [{"logits": np.asarray(r, dtype=np.float32)} for r in rows]


def test_predict_returns_label_names(nli_spec, mc_spec) -> None:
    examples = datasets.Dataset.from_dict({"label": [0, 1]})
    preds = Classification().predict(
        nli_spec, examples, examples, _outputs([[0.1, 2.0, -1.0], [-3.0, -2.0, -1.0]])
    )
    assert preds == ["neutral", "contradiction"]
    preds = MultipleChoice().predict(
        mc_spec, examples, examples, _outputs([[0.0, 0.0, 5.0, 1.0], [9.0, 0.0, 0.0, 0.0]])
    )
    assert preds == ["2", "0"]


def test_render_classification_predictions(nli_spec) -> None:
    text = Classification().render_predictions(nli_spec, None, ["neutral", "entailment", "neutral"])
    assert text == "neutral\nentailment\nneutral\n"
    assert Classification.prediction_suffix == "tsv"


def test_render_multiple_choice_predictions(mc_spec) -> None:
    text = MultipleChoice().render_predictions(mc_spec, None, ["1", "0", "3"])
    lines = text.splitlines()
    assert text.endswith("\n")
    assert [json.loads(line) for line in lines] == [{"label": 1}, {"label": 0}, {"label": 3}]
    assert all(isinstance(json.loads(line)["label"], int) for line in lines)
    letters = mc_spec.model_copy(update={"labels": list("ABCDE")})
    assert MultipleChoice().render_predictions(letters, None, ["C"]) == '{"label": "C"}\n'
    assert MultipleChoice.prediction_suffix == "jsonl"


def test_score_is_accuracy_in_percent(nli_spec) -> None:
    examples = datasets.Dataset.from_dict({"label": [0, 1, 2, 2]})
    scores = Classification().score(
        nli_spec, examples, ["entailment", "neutral", "entailment", "contradiction"]
    )
    assert scores == {"accuracy": 75.0}


def test_score_skips_unlabelled_examples(nli_spec) -> None:
    examples = datasets.Dataset.from_dict({"label": [0, UNLABELLED, 2, UNLABELLED]})
    fmt = Classification()
    assert fmt.references(nli_spec, examples) == ["entailment", None, "contradiction", None]
    scores = fmt.score(nli_spec, examples, ["entailment", "neutral", "neutral", "neutral"])
    assert scores == {"accuracy": 50.0}


def test_score_of_unlabelled_split_is_none(nli_spec, mc_spec) -> None:
    examples = datasets.Dataset.from_dict({"label": [UNLABELLED, UNLABELLED]})
    assert Classification().score(nli_spec, examples, ["neutral", "neutral"]) is None
    assert MultipleChoice().score(mc_spec, examples, ["0", "1"]) is None


def test_multiple_choice_score(mc_spec) -> None:
    examples = datasets.Dataset.from_dict({"label": [3, 0, 1]})
    assert MultipleChoice().score(mc_spec, examples, ["3", "0", "2"]) == {
        "accuracy": pytest.approx(200 / 3)
    }


def test_multiple_choice_puts_the_choice_prefix_before_each_option(tokenizer, mc_spec) -> None:
    batch = {
        "context": ["A man is on a roof."],
        "choice_prefix": ["he"],
        "choices": [["rips tiles.", "sleeps.", "sings.", "waves."]],
        "label": [0],
    }
    features = get_format("multiple_choice").encode(
        batch, [0], tokenizer=tokenizer, spec=mc_spec, max_length=64
    )
    expected = tokenizer("A man is on a roof.", "he rips tiles.")["input_ids"]
    assert features["input_ids"][0][0] == expected
