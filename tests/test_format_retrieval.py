"""The retrieval format: mean-pooled, L2-normalised layer embeddings from the encoder;
Tatoeba nearest neighbours and BUCC mining with a threshold calibrated on dev."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.formats.retrieval import PoolLayer, Retrieval
from xstilts.metrics.retrieval import bucc_f1
from xstilts.retrieval import apply_threshold, best_threshold, mine_candidates
from xstilts.tasks import TaskSpec

SENTENCES = [
    "Tom is here.",
    "Maria sagte, sie wisse nicht, wo Tom sei, und ging dann langsam nach Hause.",
    "Wie lange?",
]


def spec_of(mode: str = "tatoeba", **options) -> TaskSpec:
    metric = "bucc_f1" if mode == "bucc" else "tatoeba_accuracy"
    return TaskSpec(
        name=f"{mode}_test",
        family="retrieval",
        format="retrieval",
        metric=metric,
        options={"mode": mode, "search_backend": "torch", **options},
    )


def rows_of(sources, targets) -> datasets.Dataset:
    """sources: (id, gold) pairs; targets: ids. Texts are placeholders."""
    rows = [{"side": "source", "id": i, "text": f"src {i}", "gold": g} for i, g in sources]
    rows += [{"side": "target", "id": i, "text": f"tgt {i}", "gold": ""} for i in targets]
    return datasets.Dataset.from_list(rows)


def outputs_of(*blocks: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"embedding": row.astype(np.float32)} for block in blocks for row in block]


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# embeddings from the encoder


def _embed(fmt, spec, encoder, tokenizer, texts, max_length=64):
    features = fmt.encode(
        {"text": texts}, list(range(len(texts))), tokenizer=tokenizer, spec=spec,
        max_length=max_length,
    )  # fmt: skip
    batch = fmt.collate(features, tokenizer.pad_token_id)
    head = fmt.build_head(spec, encoder)
    with torch.no_grad():
        return features, batch, fmt.forward(encoder, head, batch)["embedding"]


def test_default_layer_scales_with_depth(encoder) -> None:
    fmt = Retrieval()
    assert encoder.config.num_hidden_layers == 2
    assert fmt.build_head(spec_of(), encoder).layer == 1  # round(14 * 2 / 24)
    assert fmt.build_head(spec_of(layer=0), encoder).layer == 0
    assert fmt.build_head(spec_of(layer=2), encoder).layer == 2
    with pytest.raises(ValueError, match=r"layer 3 outside 0\.\.2"):
        fmt.build_head(spec_of(layer=3), encoder)
    with pytest.raises(ValueError, match="outside"):
        fmt.build_head(spec_of(layer=-1), encoder)
    assert list(fmt.build_head(spec_of(), encoder).parameters()) == []


def test_encode_truncates_and_collate_pads(tokenizer) -> None:
    fmt = Retrieval()
    features = fmt.encode(
        {"text": SENTENCES}, [4, 5, 6], tokenizer=tokenizer, spec=spec_of(), max_length=10
    )
    assert features["example_index"] == [4, 5, 6]
    for text, ids in zip(SENTENCES, features["input_ids"], strict=True):
        full = tokenizer(text)["input_ids"]
        assert ids == (full if len(full) <= 10 else [*full[:9], tokenizer.eos_token_id])
    assert len(features["input_ids"][1]) == 10
    batch = fmt.collate(features, tokenizer.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (3, 10)


@pytest.mark.parametrize("layer", [None, 0, 2])
def test_embeddings_are_masked_means_of_the_chosen_layer(encoder, tokenizer, layer) -> None:
    fmt = Retrieval()
    spec = spec_of() if layer is None else spec_of(layer=layer)
    chosen = 1 if layer is None else layer
    features, batch, embeddings = _embed(fmt, spec, encoder, tokenizer, SENTENCES)
    assert embeddings.shape == (3, encoder.config.hidden_size)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # padding is present in this batch
    with torch.no_grad():
        hidden = encoder(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == encoder.config.num_hidden_layers + 1
    for row, ids in enumerate(features["input_ids"]):
        n = len(ids)
        # by hand: the mean of the real tokens' states in the batch ...
        by_hand = hidden[chosen][row, :n].mean(dim=0)
        assert torch.allclose(embeddings[row], by_hand / by_hand.norm(), atol=1e-5)
        # ... and the same sentence embedded on its own, without padding
        with torch.no_grad():
            alone = encoder(input_ids=torch.tensor([ids]), output_hidden_states=True)
        states = alone.hidden_states[chosen][0].mean(dim=0)
        assert torch.allclose(embeddings[row], states / states.norm(), atol=1e-5)
        # a mean over the padded width would differ for the shorter sentences
        if n < mask.shape[1]:
            padded_mean = hidden[chosen][row].mean(dim=0)
            assert not torch.allclose(embeddings[row], padded_mean / padded_mean.norm(), atol=1e-3)
    if layer == 0:
        with torch.no_grad():
            word = encoder.embeddings(input_ids=batch["input_ids"])
        assert torch.allclose(hidden[0], word, atol=1e-6)


def test_layers_give_different_embeddings(encoder, tokenizer) -> None:
    fmt = Retrieval()
    found = [
        _embed(fmt, spec_of(layer=layer), encoder, tokenizer, SENTENCES)[2] for layer in (0, 1, 2)
    ]
    default = _embed(fmt, spec_of(), encoder, tokenizer, SENTENCES)[2]
    assert torch.equal(default, found[1])
    assert not torch.allclose(found[0], found[1], atol=1e-3)
    assert not torch.allclose(found[1], found[2], atol=1e-3)


def test_mean_pool_layer_ignores_padded_positions() -> None:
    torch.manual_seed(0)
    states = [torch.randn(2, 5, 4) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = PoolLayer(2)(states, mask)
    changed = [s.clone() for s in states]
    changed[2][0, 3:] = 1e6  # whatever sits at padded positions
    changed[1][:] = 1e6  # other layers do not matter
    assert torch.allclose(PoolLayer(2)(changed, mask), pooled)
    expected = states[2][0, :3].mean(dim=0)
    assert torch.allclose(pooled[0], expected / expected.norm(), atol=1e-6)
    expected = states[2][1].mean(dim=0)
    assert torch.allclose(pooled[1], expected / expected.norm(), atol=1e-6)
    half = PoolLayer(0)([states[0].half()], mask)
    assert half.dtype == torch.float32


def test_first_token_pooling_is_the_normalised_first_state_of_the_layer(encoder, tokenizer) -> None:
    fmt = Retrieval()
    spec = spec_of(pooling="first", layer=2)
    assert fmt.build_head(spec_of(), encoder).pooling == "mean"  # the paper's default
    head = fmt.build_head(spec, encoder)
    assert (head.layer, head.pooling) == (2, "first")
    _, batch, pooled = _embed(fmt, spec, encoder, tokenizer, SENTENCES)
    with torch.no_grad():
        hidden = encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states
    first = hidden[2][:, 0].float()
    assert torch.allclose(pooled, first / first.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-6)
    mean = _embed(fmt, spec_of(layer=2), encoder, tokenizer, SENTENCES)[2]
    assert not torch.allclose(pooled, mean, atol=1e-3)


def test_first_token_pooling_ignores_every_other_position() -> None:
    torch.manual_seed(1)
    states = [torch.randn(2, 4, 3) for _ in range(2)]
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = PoolLayer(1, "first")(states, mask)
    changed = [s.clone() for s in states]
    changed[1][:, 1:] = 1e6
    assert torch.equal(PoolLayer(1, "first")(changed, mask), pooled)
    expected = states[1][:, 0]
    assert torch.allclose(pooled, expected / expected.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pooling": "cls"}, r"task 'tatoeba_test': option pooling is 'cls'; allowed: mean, first"),
        ({"pooling": None}, "option pooling is None"),
        ({"layer": "14"}, r"task 'tatoeba_test': option layer must be a hidden-state index"),
        ({"layer": True}, "option layer must be"),
    ],
)
def test_bad_pooling_or_layer_is_refused(encoder, options, message) -> None:
    fmt = Retrieval()
    with pytest.raises(XstiltsError, match=message):
        fmt.options(spec_of(**options))
    with pytest.raises(XstiltsError, match=message):
        fmt.build_head(spec_of(**options), encoder)
    with pytest.raises(ValueError, match="pooling must be one of mean, first"):
        PoolLayer(0, "max")


def test_retrieval_is_not_trained(encoder) -> None:
    fmt = get_format("retrieval")
    assert fmt.trainable is False
    with pytest.raises(NotImplementedError):
        fmt.loss({}, {})
    assert fmt.needs_calibration(spec_of("bucc")) is True
    assert fmt.needs_calibration(spec_of("tatoeba")) is False
    with pytest.raises(XstiltsError, match="unknown option"):
        fmt.options(spec_of(threshold=1.0))


# ---------------------------------------------------------------------------
# check_row and references


def test_check_row() -> None:
    check = Retrieval().check_row(spec_of())
    assert check({"side": "source", "text": "a", "gold": "7"})["gold"] == "7"
    assert check({"side": "source", "text": "a", "gold": 7})["gold"] == "7"
    assert check({"side": "target", "text": "b"})["gold"] == ""
    assert check({"side": "target", "text": "b", "gold": None})["gold"] == ""
    with pytest.raises(ValueError, match="side must be 'source' or 'target'"):
        check({"side": "src", "text": "a"})
    with pytest.raises(ValueError, match="field 'text' must be text"):
        check({"side": "source", "text": None})


def test_references() -> None:
    fmt = Retrieval()
    examples = rows_of([("0", "1"), ("1", "")], ["0", "1"])
    assert fmt.references(spec_of(), examples) == ["1", ""]
    assert fmt.references(spec_of(), rows_of([("0", "")], ["0"])) is None


# ---------------------------------------------------------------------------
# tatoeba


def _planted(n: int, dim: int = 16, seed: int = 0, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    source = normalised(base + noise * rng.normal(size=base.shape))
    target = normalised(base + noise * rng.normal(size=base.shape))
    return source, target


def test_tatoeba_planted_pairs_give_full_accuracy_both_ways() -> None:
    fmt = Retrieval()
    spec = spec_of()
    n = 8
    source, target = _planted(n)
    # targets stored in a shuffled order under their own ids
    perm = np.random.default_rng(1).permutation(n)  # target position p holds source perm[p]
    position_of = np.argsort(perm)
    examples = rows_of([(str(i), f"en{i}") for i in range(n)], [f"en{perm[p]}" for p in range(n)])
    outputs = outputs_of(source, target[perm])
    predictions = fmt.predict(spec, examples, examples, outputs)
    assert predictions["forward"] == position_of.tolist()
    assert predictions["backward"] == perm.tolist()
    assert fmt.score(spec, examples, predictions) == {
        "accuracy": pytest.approx(100.0),
        "accuracy_en_to_xx": pytest.approx(100.0),
    }
    text = fmt.render_predictions(spec, examples, predictions)
    assert text == "".join(f"{p}\n" for p in position_of)
    assert [int(line) for line in text.splitlines()] == position_of.tolist()


def test_tatoeba_sides_may_be_interleaved() -> None:
    fmt = Retrieval()
    spec = spec_of()
    source, target = _planted(4, seed=3)
    rows = []
    for i in range(4):
        rows.append({"side": "target", "id": str(i), "text": "t", "gold": ""})
        rows.append({"side": "source", "id": str(i), "text": "s", "gold": str(i)})
    examples = datasets.Dataset.from_list(rows)
    outputs = outputs_of(*[np.stack([target[i], source[i]]) for i in range(4)])
    predictions = fmt.predict(spec, examples, examples, outputs)
    assert predictions == {"forward": [0, 1, 2, 3], "backward": [0, 1, 2, 3]}
    assert fmt.score(spec, examples, predictions)["accuracy"] == pytest.approx(100.0)


def test_tatoeba_permutation_scores() -> None:
    """Targets whose embeddings were swapped are found at the wrong place, both ways."""
    fmt = Retrieval()
    spec = spec_of()
    n = 10
    source, target = _planted(n, seed=2)
    ids = [str(i) for i in range(n)]
    swapped = target.copy()
    swapped[[2, 7]] = target[[7, 2]]
    swapped[[4, 5, 6]] = target[[5, 6, 4]]
    examples = rows_of(list(zip(ids, ids, strict=True)), ids)
    predictions = fmt.predict(spec, examples, examples, outputs_of(source, swapped))
    forward = list(range(n))
    forward[7], forward[2] = 2, 7
    forward[5], forward[6], forward[4] = 4, 5, 6
    assert predictions["forward"] == forward
    assert predictions["backward"] == [int(np.argmax(source @ t)) for t in swapped]
    scores = fmt.score(spec, examples, predictions)
    assert scores["accuracy"] == pytest.approx(50.0)
    assert scores["accuracy_en_to_xx"] == pytest.approx(50.0)
    # a prediction list is scored as given: one more error
    predictions["forward"][0] = 1
    assert fmt.score(spec, examples, predictions)["accuracy"] == pytest.approx(40.0)


def test_tatoeba_forward_and_backward_are_scored_separately() -> None:
    """A target close to two sources: every source finds its target, not vice versa."""
    fmt = Retrieval()
    spec = spec_of()
    source = np.eye(4)
    target = np.eye(4)
    target[3] = normalised(np.array([[1.0, 0.0, 0.0, 0.1]]))[0]
    ids = ["0", "1", "2", "3"]
    examples = rows_of(list(zip(ids, ids, strict=True)), ids)
    predictions = fmt.predict(spec, examples, examples, outputs_of(source, target))
    assert predictions == {"forward": [0, 1, 2, 3], "backward": [0, 1, 2, 0]}
    assert fmt.score(spec, examples, predictions) == {
        "accuracy": pytest.approx(100.0),
        "accuracy_en_to_xx": pytest.approx(75.0),
    }


def test_tatoeba_score_without_gold_is_none() -> None:
    fmt = Retrieval()
    examples = rows_of([("0", ""), ("1", "")], ["0", "1"])
    assert fmt.score(spec_of(), examples, {"forward": [0, 1], "backward": [0, 1]}) is None


def test_a_split_needs_both_sides() -> None:
    fmt = Retrieval()
    source, _ = _planted(2)
    examples = rows_of([("0", "0"), ("1", "1")], [])
    with pytest.raises(ValueError, match="needs source and target"):
        fmt.predict(spec_of(), examples, examples, outputs_of(source))


# ---------------------------------------------------------------------------
# bucc


def _bucc_split(seed: int, noise: float, n_gold: int = 10, n_extra: int = 8, dim: int = 24):
    """Planted translation pairs among unpaired sentences; targets in shuffled order."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_gold, dim))
    source = np.concatenate(
        [base + noise * rng.normal(size=base.shape), rng.normal(size=(n_extra, dim))]
    ).astype(np.float32)
    target = np.concatenate(
        [base + noise * rng.normal(size=base.shape), rng.normal(size=(n_extra, dim))]
    ).astype(np.float32)
    perm = rng.permutation(len(target))
    target = target[perm]
    where = np.argsort(perm)
    source_ids = [f"de-{seed:02d}{i:04d}" for i in range(len(source))]
    target_ids = [f"en-{seed:02d}{i:04d}" for i in range(len(target))]
    gold = {source_ids[i]: target_ids[where[i]] for i in range(n_gold)}
    examples = rows_of([(s, gold.get(s, "")) for s in source_ids], target_ids)
    return examples, source, target, source_ids, target_ids, set(gold.items())


@pytest.fixture(scope="module")
def bucc_splits():
    return _bucc_split(1, noise=0.5), _bucc_split(101, noise=1.0)


def test_bucc_threshold_comes_from_dev_and_is_applied_to_test(bucc_splits) -> None:
    fmt = Retrieval()
    spec = spec_of("bucc", k=4)
    dev, test = bucc_splits
    dev_examples, dev_src, dev_tgt, dev_sid, dev_tid, dev_gold = dev
    test_examples, test_src, test_tgt, test_sid, test_tid, test_gold = test

    dev_candidates = mine_candidates(dev_src, dev_tgt, dev_sid, dev_tid, k=4, backend="torch")
    test_candidates = mine_candidates(test_src, test_tgt, test_sid, test_tid, k=4, backend="torch")
    dev_threshold, dev_f1 = best_threshold(dev_candidates, dev_gold)
    test_threshold, _ = best_threshold(test_candidates, test_gold)
    from_dev = apply_threshold(test_candidates, dev_threshold)
    # the two splits disagree: calibrating on test would give other predictions
    assert dev_threshold != pytest.approx(test_threshold, abs=1e-3)
    assert from_dev != apply_threshold(test_candidates, test_threshold)
    assert 0 < len(from_dev) < len(test_candidates)

    calibration = fmt.calibrate(spec, dev_examples, dev_examples, outputs_of(dev_src, dev_tgt))
    assert calibration == {
        "threshold": pytest.approx(dev_threshold),
        "dev_f1": pytest.approx(dev_f1),
    }
    assert isinstance(calibration["threshold"], float)
    test_outputs = outputs_of(test_src, test_tgt)
    predictions = fmt.predict(spec, test_examples, test_examples, test_outputs, calibration)
    expected = sorted((s, t) for score, s, t in test_candidates if score >= dev_threshold)
    assert predictions == {"pairs": expected}
    assert set(expected) == from_dev

    scores = fmt.score(spec, test_examples, predictions)
    assert scores == bucc_f1(expected, test_gold)
    correct = len(from_dev & test_gold)
    assert scores["precision"] == pytest.approx(100 * correct / len(expected))
    assert scores["recall"] == pytest.approx(100 * correct / len(test_gold))

    text = fmt.render_predictions(spec, test_examples, predictions)
    assert text == "".join(f"{s}\t{t}\n" for s, t in expected)
    assert all(line.count("\t") == 1 for line in text.splitlines())


def test_bucc_k_option_reaches_the_mining(bucc_splits) -> None:
    fmt = Retrieval()
    dev_examples, dev_src, dev_tgt, dev_sid, dev_tid, dev_gold = bucc_splits[0]
    outputs = outputs_of(dev_src, dev_tgt)
    for k in (1, 4):
        candidates = mine_candidates(dev_src, dev_tgt, dev_sid, dev_tid, k=k, backend="torch")
        threshold, f1 = best_threshold(candidates, dev_gold)
        calibration = fmt.calibrate(spec_of("bucc", k=k), dev_examples, dev_examples, outputs)
        assert calibration["threshold"] == pytest.approx(threshold)
        assert calibration["dev_f1"] == pytest.approx(f1)


def test_bucc_predict_without_calibration_raises(bucc_splits) -> None:
    examples, source, target, *_ = bucc_splits[1]
    with pytest.raises(ValueError, match="threshold chosen on the dev split"):
        Retrieval().predict(spec_of("bucc"), examples, examples, outputs_of(source, target))


def test_bucc_calibration_needs_gold(bucc_splits) -> None:
    _, source, target, source_ids, target_ids, _ = bucc_splits[0]
    unlabelled = rows_of([(s, "") for s in source_ids], target_ids)
    with pytest.raises(ValueError, match="no gold pairs"):
        Retrieval().calibrate(spec_of("bucc"), unlabelled, unlabelled, outputs_of(source, target))
    assert Retrieval().score(spec_of("bucc"), unlabelled, {"pairs": []}) is None


def test_bucc_score_uses_the_gold_pairs_of_the_split() -> None:
    fmt = Retrieval()
    examples = rows_of([("de-1", "en-2"), ("de-2", ""), ("de-3", "en-1")], ["en-1", "en-2"])
    predictions = {"pairs": [("de-1", "en-2"), ("de-2", "en-1")]}
    scores = fmt.score(spec_of("bucc"), examples, predictions)
    assert scores == {
        "f1": pytest.approx(50.0),
        "precision": pytest.approx(50.0),
        "recall": pytest.approx(50.0),
    }
    assert fmt.render_predictions(spec_of("bucc"), examples, predictions) == (
        "de-1\ten-2\nde-2\ten-1\n"
    )
