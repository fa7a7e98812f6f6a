"""The tagging format: first-subword labels, windows over long sentences, one predicted
tag per word, unlabelled sentences, prediction files, scores, head and loss."""

from __future__ import annotations

import itertools
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from xstilts.formats import get_format
from xstilts.formats.tagging import IGNORED, Tagging
from xstilts.metrics.tagging import seqeval_scores
from xstilts.samples import real_samples
from xstilts.tasks import TaskSpec
from xstilts.tasks.loading import load_split

REAL = real_samples()
EN_EWT = REAL / "udpos" / "en_ewt-ud-dev.conllu"
UPOS = [
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
]  # fmt: skip
NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
# a control character the tiny tokenizer maps to no piece at all (checked below)
NOTHING = "\x07"


def pos_spec(path: Path | None = None) -> TaskSpec:
    splits = {}
    if path is not None:
        splits = {"validation": {"local": {"path": str(path), "file_format": "conllu"}}}
    return TaskSpec(
        name="ud_test", family="syntax", format="tagging", metric="seqeval", labels=UPOS,
        splits=splits,
    )  # fmt: skip


def ner_spec() -> TaskSpec:
    return TaskSpec(name="ner_test", family="ner", format="tagging", metric="seqeval", labels=NER)


def examples_of(spec: TaskSpec, rows: list[dict]) -> datasets.Dataset:
    check = Tagging().check_row(spec)
    checked = [check(dict(row)) for row in rows]
    for i, row in enumerate(checked):
        row["id"] = str(i)
    return datasets.Dataset.from_list(checked)


def encode(examples: datasets.Dataset, tokenizer, spec, max_length: int) -> dict:
    return Tagging().encode(
        examples[:], list(range(len(examples))), tokenizer=tokenizer, spec=spec,
        max_length=max_length,
    )  # fmt: skip


def flat(lists) -> list[int]:
    return list(itertools.chain.from_iterable(lists))


def pieces(tokenizer, word: str) -> list[int]:
    return tokenizer(word, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def long_sentences(tokenizer) -> tuple[TaskSpec, datasets.Dataset]:
    """Real UD English EWT sentences of 40 words or more."""
    spec = pos_spec(EN_EWT)
    fmt = Tagging()
    loaded = load_split(
        spec, "validation", "en", fields=fmt.fields, check_row=fmt.check_row(spec), mode="local"
    )
    long = [i for i, tokens in enumerate(loaded.examples["tokens"]) if len(tokens) >= 40]
    assert len(long) >= 5
    return spec, loaded.examples.select(long[:6])


# ---------------------------------------------------------------------------
# encode


def test_the_tiny_tokenizer_drops_the_control_character(tokenizer) -> None:
    assert pieces(tokenizer, NOTHING) == []
    assert pieces(tokenizer, "") == []
    assert len(pieces(tokenizer, "Kuechly")) > 1  # a word of several pieces


def test_labels_only_on_the_first_piece_of_each_word(tokenizer) -> None:
    spec = ner_spec()
    words = ["Kawann", "Short", "visited", "Charlotte", "yesterday"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    examples = examples_of(spec, [{"tokens": words, "tags": tags}])
    features = encode(examples, tokenizer, spec, max_length=64)
    [ids], [labels], [positions] = (
        features["input_ids"], features["labels"], features["word_positions"]
    )  # fmt: skip
    per_word = [pieces(tokenizer, w) for w in words]
    assert any(len(p) > 1 for p in per_word)
    assert ids == [tokenizer.bos_token_id, *flat(per_word), tokenizer.eos_token_id]
    expected_positions = list(np.cumsum([1] + [len(p) for p in per_word[:-1]]))
    assert positions == expected_positions
    expected_labels = [IGNORED] * len(ids)
    for position, tag in zip(positions, tags, strict=True):
        expected_labels[position] = NER.index(tag)
    assert labels == expected_labels
    assert labels[0] == labels[-1] == IGNORED  # special tokens
    assert "attention_mask" not in features  # the collator derives it from the lengths
    assert features["first_word"] == [0]
    assert features["example_index"] == [0]


def test_long_real_sentences_are_cut_into_windows(tokenizer, long_sentences) -> None:
    spec, examples = long_sentences
    max_length = 16
    features = encode(examples, tokenizer, spec, max_length)
    for example, (words, tags) in enumerate(zip(examples["tokens"], examples["tags"], strict=True)):
        feats = [f for f, e in enumerate(features["example_index"]) if e == example]
        assert len(feats) >= 3
        firsts = [features["first_word"][f] for f in feats]
        assert firsts[0] == 0 and firsts == sorted(firsts)
        bounds = [*firsts, len(words)]
        all_ids = []
        for n, f in enumerate(feats):
            ids, labels = features["input_ids"][f], features["labels"][f]
            positions = features["word_positions"][f]
            assert len(ids) <= max_length
            assert len(labels) == len(ids)
            assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
            window_words = words[bounds[n] : bounds[n + 1]]
            assert len(positions) == len(window_words)
            window_pieces = [pieces(tokenizer, w) for w in window_words]
            assert all(0 < len(p) <= max_length - 2 for p in window_pieces)
            assert ids[1:-1] == flat(window_pieces)
            if n + 1 < len(feats):
                # a window is closed only when the next word would not fit
                following = len(pieces(tokenizer, words[bounds[n + 1]]))
                assert len(ids) - 2 + following > max_length - 2
            gold = dict(zip(positions, tags[bounds[n] : bounds[n + 1]], strict=True))
            assert labels == [gold.get(p, IGNORED) for p in range(len(ids))]
            all_ids.extend(ids[1:-1])
        assert all_ids == flat(pieces(tokenizer, w) for w in words)


def test_a_word_without_pieces_is_tagged_at_the_unknown_token(tokenizer) -> None:
    spec = ner_spec()
    words = ["Paris", NOTHING, "is", "", "big"]
    tags = ["B-LOC", "O", "O", "B-PER", "O"]
    examples = examples_of(spec, [{"tokens": words, "tags": tags}])
    features = encode(examples, tokenizer, spec, max_length=32)
    [ids], [labels], [positions] = (
        features["input_ids"], features["labels"], features["word_positions"]
    )  # fmt: skip
    assert len(positions) == 5
    assert ids[positions[1]] == tokenizer.unk_token_id
    assert ids[positions[3]] == tokenizer.unk_token_id
    assert [labels[p] for p in positions] == [NER.index(t) for t in tags]
    outputs = [{"logits": _logits_with_argmax(len(ids) + 2, len(NER), positions, [5, 1, 0, 2, 0])}]
    [predicted] = Tagging().predict(spec, examples, _dataset(features), outputs)
    assert predicted == ["B-LOC", "B-PER", "O", "I-PER", "O"]


def test_a_word_longer_than_the_budget_keeps_its_first_pieces(tokenizer) -> None:
    spec = ner_spec()
    long_word = "Donaudampfschifffahrtsgesellschaftskapitänswitwe" * 2
    assert len(pieces(tokenizer, long_word)) > 14
    words = ["the", long_word, "sank"]
    examples = examples_of(spec, [{"tokens": words, "tags": ["O", "B-ORG", "O"]}])
    features = encode(examples, tokenizer, spec, max_length=16)
    assert all(len(ids) <= 16 for ids in features["input_ids"])
    assert features["first_word"] == [0, 1, 2]
    assert features["input_ids"][1][1:-1] == pieces(tokenizer, long_word)[:14]
    outputs = [
        {"logits": _logits_with_argmax(16, len(NER), positions, [3] * len(positions))}
        for positions in features["word_positions"]
    ]
    assert Tagging().predict(spec, examples, _dataset(features), outputs) == [
        ["B-ORG", "B-ORG", "B-ORG"]
    ]


def test_max_length_without_room_for_words(tokenizer) -> None:
    spec = ner_spec()
    examples = examples_of(spec, [{"tokens": ["a"], "tags": ["O"]}])
    with pytest.raises(ValueError, match="no room for words"):
        encode(examples, tokenizer, spec, max_length=2)
    features = encode(examples, tokenizer, spec, max_length=3)
    assert len(features["input_ids"][0]) == 3


def test_unlabelled_sentences(tokenizer) -> None:
    spec = ner_spec()
    rows = [{"tokens": ["an", "unlabelled", "one"], "tags": None}, {"tokens": ["two"]}]
    examples = examples_of(spec, rows)
    assert examples["tags"] == [[], []]
    features = encode(examples, tokenizer, spec, max_length=32)
    assert all(set(labels) == {IGNORED} for labels in features["labels"])
    assert [len(p) for p in features["word_positions"]] == [3, 1]
    fmt = Tagging()
    assert fmt.references(spec, examples) is None
    assert fmt.score(spec, examples, [["O", "O", "O"], ["O"]]) is None
    # mixed: only the labelled sentence is scored
    mixed = examples_of(spec, [rows[0], {"tokens": ["Bob", "ran"], "tags": ["B-PER", "O"]}])
    assert fmt.references(spec, mixed) == [None, ["B-PER", "O"]]
    scores = fmt.score(spec, mixed, [["B-PER", "B-PER", "B-PER"], ["B-PER", "O"]])
    assert scores["f1"] == pytest.approx(100.0)
    assert scores["token_accuracy"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------
# predict


def _logits_with_argmax(
    width: int, num_labels: int, positions: list[int], targets: list[int], seed: int = 0
) -> np.ndarray:
    """Random logits (as large as the chosen ones elsewhere) with a known argmax per word."""
    rng = np.random.default_rng(seed + width)
    logits = rng.normal(scale=5.0, size=(width, num_labels)).astype(np.float32)
    for position, target in zip(positions, targets, strict=True):
        logits[position] = rng.normal(size=num_labels)
        logits[position, target] = 20.0
    return logits


def _dataset(features: dict) -> datasets.Dataset:
    return datasets.Dataset.from_dict(features)


def test_predict_joins_the_windows_of_long_real_sentences(tokenizer, long_sentences) -> None:
    spec, examples = long_sentences
    features = encode(examples, tokenizer, spec, max_length=16)
    width = max(len(ids) for ids in features["input_ids"]) + 3  # padded like a batch
    outputs = []
    for f, positions in enumerate(features["word_positions"]):
        first = features["first_word"][f]
        targets = [(first + i) % len(UPOS) for i in range(len(positions))]
        outputs.append({"logits": _logits_with_argmax(width, len(UPOS), positions, targets, f)})
    # windows out of order in the features table must not matter
    order = list(range(len(outputs)))[::-1]
    shuffled = _dataset(features).select(order)
    predictions = Tagging().predict(spec, examples, shuffled, [outputs[i] for i in order])
    assert len(predictions) == len(examples)
    for words, tags in zip(examples["tokens"], predictions, strict=True):
        assert tags == [UPOS[i % len(UPOS)] for i in range(len(words))]


def test_predict_uses_only_the_word_positions(tokenizer) -> None:
    spec = ner_spec()
    words = ["Kawann", "Kuechly", "Charlotte"]
    examples = examples_of(spec, [{"tokens": words, "tags": ["B-PER", "I-PER", "B-LOC"]}])
    features = encode(examples, tokenizer, spec, max_length=32)
    [positions] = features["word_positions"]
    width = len(features["input_ids"][0])
    logits = np.zeros((width, len(NER)), dtype=np.float32)
    logits[:, 6] = 100.0  # every other position says I-LOC
    for position, target in zip(positions, [1, 2, 5], strict=True):
        logits[position] = 0.0
        logits[position, target] = 1.0
    predictions = Tagging().predict(spec, examples, _dataset(features), [{"logits": logits}])
    assert predictions == [["B-PER", "I-PER", "B-LOC"]]


# ---------------------------------------------------------------------------
# check_row, references, scores, prediction files


def test_check_row() -> None:
    check = Tagging().check_row(ner_spec())
    assert check({"tokens": ["a", "b"], "tags": ["B-PER", "O"]})["tags"] == [1, 0]
    assert check({"tokens": ["a", "b"], "tags": [3, 0]})["tags"] == [3, 0]  # hub ClassLabels
    assert check({"tokens": ["a"]})["tags"] == []
    with pytest.raises(ValueError, match="2 words but tags"):
        check({"tokens": ["a", "b"], "tags": ["O"]})
    with pytest.raises(ValueError, match="not one of the task's labels"):
        check({"tokens": ["a"], "tags": ["B-MISC"]})
    with pytest.raises(ValueError, match="without words"):
        check({"tokens": [], "tags": []})
    with pytest.raises(ValueError, match="list of words"):
        check({"tokens": "a b", "tags": None})
    with pytest.raises(ValueError, match="list of words"):
        check({"tokens": ["a", 3], "tags": None})


@pytest.mark.parametrize("missing", ["", None])
def test_check_row_rejects_a_missing_tag_in_a_labelled_sentence(missing) -> None:
    check = Tagging().check_row(ner_spec())
    with pytest.raises(ValueError):
        check({"tokens": ["Bob", "ran"], "tags": ["B-PER", missing]})


def test_render_predictions_one_tag_per_line() -> None:
    text = Tagging().render_predictions(ner_spec(), None, [["B-PER", "O"], ["O"], ["I-LOC"]])
    assert text == "B-PER\nO\n\nO\n\nI-LOC\n\n"
    assert Tagging.prediction_suffix == "tsv"


def test_score_is_seqeval_with_token_accuracy() -> None:
    spec = ner_spec()
    examples = examples_of(
        spec,
        [
            {"tokens": list("abcd"), "tags": ["B-PER", "I-PER", "O", "B-LOC"]},
            {"tokens": list("ef"), "tags": ["B-ORG", "O"]},
        ],
    )
    predictions = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    scores = Tagging().score(spec, examples, predictions)
    assert scores["precision"] == pytest.approx(100 * 2 / 3)
    assert scores["recall"] == pytest.approx(100 * 2 / 3)
    assert scores["f1"] == pytest.approx(100 * 2 / 3)
    assert scores["token_accuracy"] == pytest.approx(100 * 4 / 6)
    assert scores == seqeval_scores(predictions, [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]])


def test_score_of_pos_tags_merges_runs_of_equal_tags() -> None:
    spec = pos_spec()
    examples = examples_of(spec, [{"tokens": list("abc"), "tags": ["NOUN", "NOUN", "VERB"]}])
    scores = Tagging().score(spec, examples, [["NOUN", "VERB", "VERB"]])
    assert scores["token_accuracy"] == pytest.approx(100 * 2 / 3)
    assert scores["f1"] != pytest.approx(scores["token_accuracy"])


# ---------------------------------------------------------------------------
# collate, head, forward, loss


def test_collate_pads_labels_with_ignored(tokenizer) -> None:
    spec = ner_spec()
    examples = examples_of(
        spec,
        [
            {"tokens": ["short"], "tags": ["O"]},
            {"tokens": ["a", "much", "longer", "sentence", "Kuechly"], "tags": ["O"] * 5},
        ],
    )
    features = encode(examples, tokenizer, spec, max_length=64)
    fmt = get_format("tagging")
    batch = fmt.collate(_dataset(features)[:], tokenizer.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    lengths = [len(ids) for ids in features["input_ids"]]
    width = max(lengths)
    assert batch["labels"].shape == batch["input_ids"].shape == (2, width)
    short = lengths[0]
    assert batch["labels"][0].tolist() == features["labels"][0] + [IGNORED] * (width - short)
    assert batch["labels"][1].tolist() == features["labels"][1]
    assert batch["input_ids"][0, short:].eq(tokenizer.pad_token_id).all()
    assert batch["attention_mask"][0].tolist() == [1] * short + [0] * (width - short)


def test_forward_loss_and_gradients(tokenizer, encoder) -> None:
    torch.manual_seed(0)
    spec = ner_spec()
    fmt = Tagging()
    examples = examples_of(
        spec,
        [
            {"tokens": ["Bob", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
            {"tokens": ["Kuechly", "intercepted", "four", "passes"], "tags": ["B-PER"] + ["O"] * 3},
        ],
    )
    batch = fmt.collate(encode(examples, tokenizer, spec, max_length=64), tokenizer.pad_token_id)
    head = fmt.build_head(spec, encoder)
    outputs = fmt.forward(encoder, head, batch)
    assert outputs["logits"].shape == (*batch["input_ids"].shape, len(NER))
    loss = fmt.loss(outputs, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # the loss is the mean cross-entropy over the labelled (first-piece) positions only
    logits = outputs["logits"].detach()
    mask = batch["labels"] != IGNORED
    expected = torch.nn.functional.cross_entropy(logits[mask], batch["labels"][mask])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    encoder.zero_grad(set_to_none=True)
    loss.backward()
    linear = head[1]
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert encoder.embeddings.word_embeddings.weight.grad is not None
    encoder.zero_grad(set_to_none=True)
