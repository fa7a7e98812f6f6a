"""The dual-encoder format (XTREME-R's LAReQA and Mewsli-X) and its readers: rows,
features, the in-batch contrastive loss, ranking and mAP@20, the prediction layout,
and the pipeline end to end on files written here in the original layouts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from tests.conftest import REAL_DATA
from xstilts.config import ModelConfig, TinyModelConfig, parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import run_experiment
from xstilts.formats import get_format
from xstilts.formats.dual_encoder import CANDIDATE, NOT_A_PAIR, QUERY, DualEncoder
from xstilts.metrics.retrieval import mean_average_precision_at_k
from xstilts.modeling import build_encoder
from xstilts.tasks import TaskSpec, load_registry
from xstilts.tasks.loading import load_split
from xstilts.tasks.readers import READERS
from xstilts.tasks.readers_retrieval import (
    read_mewslix_mentions,
    read_mewslix_pairs,
    read_squad_sentences,
    read_xquad_r,
    sentence_spans,
)

TINY = ModelConfig(tiny=TinyModelConfig())


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return build_encoder(TINY, tokenizer)


def spec_of(**options) -> TaskSpec:
    return TaskSpec(
        name="dual_test",
        family="retrieval",
        format="dual_encoder",
        metric="map@20",
        options={"search_backend": "torch", **options},
    )


def checked(rows: list[dict]) -> datasets.Dataset:
    check = DualEncoder().check_row(spec_of())
    return datasets.Dataset.from_list([check(dict(row)) for row in rows])


# ---------------------------------------------------------------------------
# rows


def test_check_row_normalises_the_three_kinds_of_row() -> None:
    check = DualEncoder().check_row(spec_of())
    pair = check({"side": "pair", "id": "q1", "text": "who?", "candidate_text": "Ann did."})
    assert pair["relevant"] == ["Ann did."]  # no id given: the text names the candidate
    assert pair["context"] == pair["candidate_context"] == ""
    pair = check({"id": "q1", "text": "who?", "candidate_text": "Ann did.", "relevant": "e7"})
    assert (pair["side"], pair["relevant"]) == ("pair", ["e7"])  # side inferred
    query = check({"side": "query", "id": "q2", "text": "where?", "relevant": ["a", 3]})
    assert query["relevant"] == ["a", "3"]
    assert check({"side": "query", "text": "where?", "relevant": None})["relevant"] == []
    candidate = check({"side": "candidate", "id": "c1", "text": "Here.", "context": "Here. Yes."})
    assert (candidate["relevant"], candidate["context"]) == ([], "Here. Yes.")
    assert check({"side": "candidate", "id": 0, "text": "Zero."})["side"] == "candidate"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"side": "answer", "text": "a"}, "side must be one of pair, query, candidate"),
        ({"text": "a"}, "side must be one of"),
        ({"side": "pair", "text": "a"}, "needs its positive candidate"),
        ({"side": "pair", "text": "a", "candidate_text": "b", "relevant": ["x", "y"]}, "one pos"),
        ({"side": "query", "text": "a", "candidate_text": "b"}, "belongs to pairs"),
        ({"side": "candidate", "id": "c", "text": "a", "relevant": ["c"]}, "no relevant"),
        ({"side": "candidate", "text": "a"}, "needs an 'id'"),
        ({"side": "query", "text": None}, "field 'text' must be text"),
        ({"side": "query", "text": "a", "context": 3}, "field 'context' must be text"),
        ({"side": "query", "text": "a", "relevant": {"x": 1}}, "'relevant' must be"),
    ],
)
def test_check_row_rejects(row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DualEncoder().check_row(spec_of())(row)


def test_options_are_checked() -> None:
    fmt = get_format("dual_encoder")
    assert fmt.options(spec_of())["top_k"] == 20
    assert fmt.options(spec_of())["pooling"] == "pooler"
    for options, message in [
        ({"pooling": "max"}, "pooling is 'max'"),
        ({"temperature": 0}, "temperature must be positive"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"learn_temperature": "yes"}, "learn_temperature must be true or false"),
        ({"max_query_length": 2.5}, "max_query_length must be a positive integer"),
        ({"margin": 1}, "unknown option"),
    ]:
        with pytest.raises(XstiltsError, match=message):
            fmt.check_row(spec_of(**options))


def test_training_keeps_only_pairs() -> None:
    examples = checked(
        [
            {"side": "pair", "id": "q", "text": "a", "candidate_text": "b"},
            {"side": "query", "id": "r", "text": "c"},
            {"side": "candidate", "id": "x", "text": "d"},
        ]
    )
    kept, skipped = DualEncoder().prepare_training_examples(spec_of(), examples)
    assert kept["id"] == ["q"] and skipped == {NOT_A_PAIR: 2}


# ---------------------------------------------------------------------------
# features

MIXED = [
    {
        "side": "pair",
        "id": "q0",
        "text": "Who wrote the long book about the sea and the whale?",
        "candidate_text": "Melville wrote it.",
        "candidate_context": "It is long. Melville wrote it.",
        "relevant": ["p0"],
    },
    {"side": "query", "id": "q1", "text": "Where is it?", "relevant": ["c0"]},
    {"side": "candidate", "id": "c0", "text": "In Paris.", "context": "It is old. In Paris."},
]


def test_encode_evaluation_features_of_mixed_rows(tokenizer) -> None:
    fmt = DualEncoder()
    spec = spec_of(max_query_length=8)
    examples = checked(MIXED)
    features = fmt.encode(examples[:], [5, 6, 7], tokenizer=tokenizer, spec=spec, max_length=64)
    assert "attention_mask" not in features  # derived from the lengths in collate
    # rows first (pair and query as queries, the candidate row), then the pairs' positives
    assert features["role"] == [QUERY, QUERY, CANDIDATE, CANDIDATE]
    assert features["example_index"] == [5, 6, 7, 5]
    ids = features["input_ids"]
    assert len(ids[0]) == 8  # the long question is cut to max_query_length
    assert ids[1] == tokenizer("Where is it?")["input_ids"]
    assert ids[2] == tokenizer("In Paris.", "It is old. In Paris.")["input_ids"]  # text pair
    melville = tokenizer("Melville wrote it.", "It is long. Melville wrote it.")["input_ids"]
    assert ids[3] == melville
    batch = fmt.collate(features, tokenizer.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask"}
    lengths = [len(i) for i in ids]
    assert batch["input_ids"].shape == (4, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths


def test_encode_training_features_hold_both_sides(tokenizer) -> None:
    fmt = DualEncoder()
    spec = spec_of(max_candidate_length=10)
    rows = [
        MIXED[0],
        {"side": "pair", "id": "q2", "text": "Who?", "candidate_text": "Ann.", "relevant": "p0"},
        {"side": "pair", "id": "q3", "text": "What?", "candidate_text": "A cat."},
    ]
    examples = checked(rows)
    features = fmt.encode(
        examples[:], [0, 1, 2], tokenizer=tokenizer, spec=spec, max_length=64, training=True
    )
    assert set(features) == {"input_ids", "candidate_input_ids", "candidate_group"}
    assert features["input_ids"][1] == tokenizer("Who?")["input_ids"]
    assert features["candidate_input_ids"][2] == tokenizer("A cat.")["input_ids"]
    assert len(features["candidate_input_ids"][0]) == 10  # max_candidate_length
    groups = features["candidate_group"]
    assert groups[0] == groups[1] != groups[2]  # the same positive id, the same group
    assert all(0 <= g < 2**63 for g in groups)
    batch = fmt.collate(features, tokenizer.pad_token_id)
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "candidate_input_ids",
        "candidate_attention_mask",
        "candidate_group",
    }
    candidate_lengths = [len(c) for c in features["candidate_input_ids"]]
    assert batch["candidate_attention_mask"].sum(dim=1).tolist() == candidate_lengths
    assert batch["candidate_input_ids"][2, candidate_lengths[2] :].eq(tokenizer.pad_token_id).all()


# ---------------------------------------------------------------------------
# the loss


def _unit(rows: np.ndarray) -> torch.Tensor:
    return torch.tensor(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=torch.float32)


def _hand_loss(query: torch.Tensor, candidate: torch.Tensor, scale: float, masked=()) -> float:
    total = 0.0
    n = len(query)
    for i in range(n):
        logits = [scale * float(query[i] @ candidate[j]) for j in range(n) if (i, j) not in masked]
        own = scale * float(query[i] @ candidate[i])
        total += math.log(sum(math.exp(v) for v in logits)) - own
    return total / n


def test_loss_is_in_batch_softmax_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    query, candidate = _unit(rng.normal(size=(4, 6))), _unit(rng.normal(size=(4, 6)))
    scale = 20.0
    outputs = {"logits": scale * query @ candidate.T}
    fmt = DualEncoder()
    distinct = {"candidate_group": torch.tensor([1, 2, 3, 4])}
    assert fmt.loss(outputs, distinct).item() == pytest.approx(
        _hand_loss(query, candidate, scale), rel=1e-5
    )
    # rows 0 and 2 share their positive: neither counts the other's as a negative
    repeated = {"candidate_group": torch.tensor([9, 2, 9, 4])}
    expected = _hand_loss(query, candidate, scale, masked={(0, 2), (2, 0)})
    assert fmt.loss(outputs, repeated).item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_hand_loss(query, candidate, scale))


@pytest.mark.parametrize("pooling", ["pooler", "first", "mean"])
def test_forward_loss_and_gradients_reach_the_encoder(encoder, tokenizer, pooling) -> None:
    fmt = DualEncoder()
    spec = spec_of(pooling=pooling, temperature=0.05)
    rows = [
        {"side": "pair", "id": f"q{i}", "text": q, "candidate_text": a, "relevant": f"c{i}"}
        for i, (q, a) in enumerate(
            [("Who won?", "Ann won the race."), ("Where?", "In Rome."), ("When?", "In May 1990.")]
        )
    ]
    features = fmt.encode(
        checked(rows)[:], [0, 1, 2], tokenizer=tokenizer, spec=spec, max_length=32, training=True
    )
    batch = fmt.collate(features, tokenizer.pad_token_id)
    torch.manual_seed(0)
    head = fmt.build_head(spec, encoder)
    assert head.logit_scale.item() == pytest.approx(20.0)  # 1 / temperature
    assert head.logit_scale.requires_grad  # learned, as XTREME-R's logit_scale
    encoder.zero_grad(set_to_none=True)
    outputs = fmt.forward(encoder, head, batch)
    assert outputs["query"].shape == outputs["candidate"].shape == (3, 32)
    norms = torch.cat([outputs["query"], outputs["candidate"]]).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(6), atol=1e-5)
    loss = fmt.loss(outputs, batch)
    hand = _hand_loss(outputs["query"].detach(), outputs["candidate"].detach(), 20.0)
    assert loss.item() == pytest.approx(hand, rel=1e-4)
    loss.backward()
    assert encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert encoder.encoder.layer[-1].output.dense.weight.grad.abs().sum() > 0
    assert head.logit_scale.grad is not None and head.logit_scale.grad.abs().item() > 0
    if pooling == "pooler":
        assert head.dense.weight.grad.abs().sum() > 0
    else:
        assert not hasattr(head, "dense")
    encoder.zero_grad(set_to_none=True)


def test_fixed_temperature_is_not_a_parameter(encoder) -> None:
    head = DualEncoder().build_head(spec_of(learn_temperature=False, pooling="mean"), encoder)
    assert list(head.parameters()) == []
    assert head.logit_scale.item() == pytest.approx(100.0)
    assert head.state_dict() == {}


def test_evaluation_forward_embeds_each_feature(encoder, tokenizer) -> None:
    fmt = DualEncoder()
    spec = spec_of()
    features = fmt.encode(
        checked(MIXED)[:], [0, 1, 2], tokenizer=tokenizer, spec=spec, max_length=64
    )
    batch = fmt.collate(features, tokenizer.pad_token_id)
    with torch.no_grad():
        outputs = fmt.forward(encoder, fmt.build_head(spec, encoder), batch)
    assert set(outputs) == {"embedding"}
    assert outputs["embedding"].shape == (4, 32)


@pytest.mark.parametrize("pooling", ["pooler", "first", "mean"])
def test_padding_does_not_change_an_embedding(encoder, tokenizer, pooling) -> None:
    fmt = DualEncoder()
    spec = spec_of(pooling=pooling)
    head = fmt.build_head(spec, encoder)
    rows = [
        {"side": "query", "id": "a", "text": "Short?"},
        {"side": "candidate", "id": "b", "text": "A much longer candidate sentence than that."},
    ]
    examples = checked(rows)
    encoder.eval()
    with torch.no_grad():
        together = fmt.collate(
            fmt.encode(examples[:], [0, 1], tokenizer=tokenizer, spec=spec, max_length=64),
            tokenizer.pad_token_id,
        )
        assert (together["attention_mask"] == 0).any()
        both = fmt.forward(encoder, head, together)["embedding"]
        alone = fmt.collate(
            fmt.encode(examples[:1], [0], tokenizer=tokenizer, spec=spec, max_length=64),
            tokenizer.pad_token_id,
        )
        single = fmt.forward(encoder, head, alone)["embedding"]
    assert torch.allclose(both[0], single[0], atol=1e-5)
    if pooling == "mean":
        states = encoder(input_ids=alone["input_ids"]).last_hidden_state[0].mean(dim=0)
        assert torch.allclose(single[0], states / states.norm(), atol=1e-5)


# ---------------------------------------------------------------------------
# ranking and scoring


def _split(queries: dict[str, list[str]], candidates: list[str]) -> tuple:
    rows = [{"side": "query", "id": q, "text": q, "relevant": r} for q, r in queries.items()]
    rows += [{"side": "candidate", "id": c, "text": c} for c in candidates]
    examples = checked(rows)
    features = datasets.Dataset.from_dict(
        {
            "role": [QUERY] * len(queries) + [CANDIDATE] * len(candidates),
            "example_index": list(range(len(rows))),
        }
    )
    return examples, features


def _outputs(*blocks: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"embedding": row.astype(np.float32)} for block in blocks for row in block]


def test_predict_ranks_planted_matches_first_and_scores_100() -> None:
    fmt = DualEncoder()
    rng = np.random.default_rng(1)
    n_queries, n_candidates = 30, 50
    pool = _unit(rng.normal(size=(n_candidates, 64))).numpy()
    planted = rng.permutation(n_candidates)[:n_queries]
    noise = rng.normal(scale=0.01, size=(n_queries, 64))
    queries = _unit(pool[planted] + noise).numpy()
    candidate_ids = [f"e{j}" for j in range(n_candidates)]
    gold = {f"m{i}": [candidate_ids[planted[i]]] for i in range(n_queries)}
    examples, features = _split(gold, candidate_ids)
    spec = spec_of()
    predictions = fmt.predict(spec, examples, features, _outputs(queries, pool))
    assert list(predictions) == list(gold)  # every query, in split order
    for qid, ranked in predictions.items():
        assert len(ranked) == 20
        assert ranked[0] == gold[qid][0]
        assert len(set(ranked)) == 20
    assert fmt.score(spec, examples, predictions) == {"map@20": pytest.approx(100.0)}
    assert fmt.references(spec, examples) == list(gold.values())


def test_score_matches_mean_average_precision_by_hand() -> None:
    fmt = DualEncoder()
    rng = np.random.default_rng(2)
    queries = _unit(rng.normal(size=(6, 8))).numpy()
    pool = _unit(rng.normal(size=(12, 8))).numpy()
    candidate_ids = [f"c{j}" for j in range(12)]
    gold = {
        f"q{i}": [f"c{j}" for j in rng.choice(12, size=1 + i % 3, replace=False)] for i in range(6)
    }
    examples, features = _split(gold, candidate_ids)
    spec = spec_of(top_k=5)
    predictions = fmt.predict(spec, examples, features, _outputs(queries, pool))
    order = np.argsort(-(queries @ pool.T), axis=1, kind="stable")[:, :5]
    ranked = [[candidate_ids[j] for j in row] for row in order]
    assert list(predictions.values()) == ranked
    expected = mean_average_precision_at_k(ranked, [set(r) for r in gold.values()], k=20)
    assert fmt.score(spec, examples, predictions) == pytest.approx(expected)
    # AP by hand for the first query: hits at ranks r_1 < r_2 ... give sum(h / r_h) / |gold|
    hits = [rank for rank, c in enumerate(ranked[0], start=1) if c in gold["q0"]]
    by_hand = sum((h + 1) / r for h, r in enumerate(hits)) / min(len(gold["q0"]), 20)
    one = mean_average_precision_at_k([ranked[0]], [set(gold["q0"])])["map@20"]
    assert one == pytest.approx(100 * by_hand)


def test_small_pool_and_unlabelled_and_missing_relevant() -> None:
    fmt = DualEncoder()
    spec = spec_of()
    examples, features = _split({"a": ["x"], "b": [], "c": ["gone"]}, ["x", "y", "z"])
    rng = np.random.default_rng(3)
    outputs = _outputs(
        _unit(rng.normal(size=(3, 4))).numpy(), _unit(rng.normal(size=(3, 4))).numpy()
    )
    predictions = fmt.predict(spec, examples, features, outputs)
    assert all(len(r) == 3 for r in predictions.values())  # k = min(20, pool)
    # "b" is unlabelled and "c"'s relevant candidate is not in the pool: only "a" counts
    rank = predictions["a"].index("x") + 1
    assert fmt.score(spec, examples, predictions) == {"map@20": pytest.approx(100 / rank)}
    unlabelled, _ = _split({"b": []}, ["x"])
    assert fmt.references(spec, unlabelled) is None
    assert fmt.score(spec, unlabelled, {"b": ["x"]}) is None


def test_pairs_are_searched_against_their_own_candidates() -> None:
    """A validation split of pairs: one candidate per id, repeated positives merged."""
    fmt = DualEncoder()
    spec = spec_of()
    rows = [
        {"side": "pair", "id": "m1", "text": "a", "candidate_text": "E1", "relevant": "e1"},
        {"side": "pair", "id": "m2", "text": "b", "candidate_text": "E2", "relevant": "e2"},
        {"side": "pair", "id": "m3", "text": "c", "candidate_text": "E1", "relevant": "e1"},
    ]
    examples = checked(rows)
    features = datasets.Dataset.from_dict(
        {"role": [QUERY] * 3 + [CANDIDATE] * 3, "example_index": [0, 1, 2, 0, 1, 2]}
    )
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    queries = np.stack([e1, e2, e1 * 0.6 + e2 * 0.8])
    outputs = _outputs(queries, np.stack([e1, e2, e1]))
    predictions = fmt.predict(spec, examples, features, outputs)
    assert predictions == {"m1": ["e1", "e2"], "m2": ["e2", "e1"], "m3": ["e2", "e1"]}
    assert fmt.score(spec, examples, predictions) == {"map@20": pytest.approx(100 * 2.5 / 3)}


def test_predict_needs_unique_queries_and_a_pool() -> None:
    fmt = DualEncoder()
    examples, features = _split({"a": ["x"]}, [])
    with pytest.raises(XstiltsError, match="needs queries and candidates"):
        fmt.predict(spec_of(), examples, features, _outputs(np.ones((1, 2))))
    rows = [
        {"side": "query", "id": "a", "text": "1"},
        {"side": "query", "id": "a", "text": "2"},
        {"side": "candidate", "id": "x", "text": "3"},
    ]
    features = datasets.Dataset.from_dict({"role": [0, 0, 1], "example_index": [0, 1, 2]})
    with pytest.raises(XstiltsError, match="query id 'a' occurs twice"):
        fmt.predict(spec_of(), checked(rows), features, _outputs(np.ones((3, 2))))


def test_render_writes_the_mewslix_layout() -> None:
    fmt = DualEncoder()
    examples, _ = _split({"q2": ["b"], "q1": ["a"]}, ["a", "b"])
    text = fmt.render_predictions(spec_of(), examples, {"q2": ["b", "a"], "q1": ["a", "b"]})
    assert text.endswith("\n")
    assert json.loads(text) == {"q2": ["b", "a"], "q1": ["a", "b"]}
    assert list(json.loads(text)) == ["q2", "q1"]
    assert fmt.prediction_suffix == "json"


# ---------------------------------------------------------------------------
# readers, on small files in the original layouts


def test_sentence_spans() -> None:
    text = (
        "Dr. Smith went to Washington.  He met J. R. Tolkien in the U.S. Army in Jan. 1944! "
        '"Why?" she asked. It was No. 5 on the list. He said no. Then left.'
    )
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Dr. Smith went to Washington.",
        "He met J. R. Tolkien in the U.S. Army in Jan. 1944!",
        '"Why?" she asked.',
        "It was No. 5 on the list.",
        "He said no.",
        "Then left.",
    ]
    assert sentence_spans("  ") == []


SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Sea",
            "paragraphs": [
                {
                    "context": "The sea is big. Whales live in it. They sing.",
                    "qas": [
                        {
                            "id": "s1",
                            "question": "Who lives in the sea?",
                            "answers": [{"answer_start": 16, "text": "Whales"}],
                        },
                        {
                            "id": "s2",
                            "question": "What do they do?",
                            "answers": [{"answer_start": 40, "text": "sing"}],
                        },
                        {  # answer_start does not point at the answer: skipped, as XTREME-R
                            "id": "s3",
                            "question": "Broken?",
                            "answers": [{"answer_start": 0, "text": "Whales"}],
                        },
                    ],
                },
                {
                    "context": "Cats sleep.",
                    "qas": [
                        {
                            "id": "s4",
                            "question": "What do cats do?",
                            "answers": [{"answer_start": 5, "text": "sleep"}],
                        }
                    ],
                },
            ],
        }
    ],
}


def test_squad_sentences_reader(tmp_path: Path) -> None:
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    pairs = [row for _, row in read_squad_sentences(path)]
    context = SQUAD["data"][0]["paragraphs"][0]["context"]
    assert pairs == [
        {
            "side": "pair",
            "id": "s1",
            "text": "Who lives in the sea?",
            "candidate_text": "Whales live in it.",
            "candidate_context": context,
            "relevant": ["1_1"],
        },
        {
            "side": "pair",
            "id": "s2",
            "text": "What do they do?",
            "candidate_text": "They sing.",
            "candidate_context": context,
            "relevant": ["1_2"],
        },
        {
            "side": "pair",
            "id": "s4",
            "text": "What do cats do?",
            "candidate_text": "Cats sleep.",
            "candidate_context": "Cats sleep.",
            "relevant": ["2_0"],
        },
    ]
    rows = [row for _, row in read_squad_sentences(path, mode="retrieval")]
    candidates = {r["id"]: r["text"] for r in rows if r["side"] == "candidate"}
    assert candidates == {
        "1_0": "The sea is big.",
        "1_1": "Whales live in it.",
        "1_2": "They sing.",
        "2_0": "Cats sleep.",
    }
    queries = {r["id"]: r["relevant"] for r in rows if r["side"] == "query"}
    assert queries == {"s1": ["1_1"], "s2": ["1_2"], "s4": ["2_0"]}
    with pytest.raises(XstiltsError, match="'mode' must be"):
        list(read_squad_sentences(path, mode="both"))


def test_squad_sentences_on_real_xquad_english() -> None:
    """XQuAD's English file is SQuAD v1.1 dev text: nearly every answer lies in its sentence."""
    path = REAL_DATA / "xquad" / "xquad.en.json"
    answers = {}
    for paragraph in json.loads(path.read_text("utf-8"))["data"]:
        for p in paragraph["paragraphs"]:
            for qa in p["qas"]:
                answers[qa["id"]] = qa["answers"][0]["text"]
    pairs = [row for _, row in read_squad_sentences(path)]
    assert len(pairs) >= 0.99 * len(answers)
    inside = sum(answers[p["id"]] in p["candidate_text"] for p in pairs)
    assert inside >= 0.99 * len(pairs)
    assert all(p["candidate_text"] in p["candidate_context"] for p in pairs)
    rows = [row for _, row in read_squad_sentences(path, mode="retrieval")]
    sentences = sum(r["side"] == "candidate" for r in rows)
    # XQuAD-R's annotated English file has 1,180 sentences (LAReQA README)
    assert abs(sentences - 1180) <= 0.02 * 1180


def _xquad_r(questions: list[tuple[str, str, str]], sentences: list[str]) -> dict:
    """One paragraph: questions are (id, question, answer sentence)."""
    context = " ".join(sentences)
    breaks, start = [], 0
    for sentence in sentences:
        breaks.append([start, start + len(sentence)])
        start += len(sentence) + 1
    qas = []
    for qid, question, answer_sentence in questions:
        offset = context.index(answer_sentence)
        qas.append(
            {
                "answers": [{"answer_start": offset + 2, "text": answer_sentence[2:5]}],
                "id": qid,
                "question": question,
            }
        )
    paragraph = {"context": context, "qas": qas, "sentence_breaks": breaks, "sentences": sentences}
    return {"data": [{"paragraphs": [paragraph], "title": "t"}]}


XQUAD_R = {
    "en": _xquad_r(
        [("x1", "Who is it?", "It is Ann."), ("x2", "Where?", "She lives in Rome.")],
        ["It is Ann.", "She lives in Rome.", "The end."],
    ),
    "de": _xquad_r(
        [("x1", "Wer ist es?", "Es ist Ann."), ("x2", "Wo?", "Sie wohnt in Rom.")],
        ["Es ist Ann.", "Sie wohnt in Rom."],
    ),
}


def _write_xquad_r(folder: Path, languages=XQUAD_R) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, payload in languages.items():
        (folder / f"{lang}.json").write_text(json.dumps(payload, ensure_ascii=False), "utf-8")


def test_xquad_r_reader_builds_the_multilingual_pool(tmp_path: Path) -> None:
    _write_xquad_r(tmp_path)
    companions = {"de": tmp_path / "de.json", "en": tmp_path / "en.json"}
    rows = [row for _, row in read_xquad_r(tmp_path / "de.json", companions=companions)]
    queries = [r for r in rows if r["side"] == "query"]
    assert [(q["id"], q["text"]) for q in queries] == [("x1", "Wer ist es?"), ("x2", "Wo?")]
    assert queries[0]["relevant"] == ["de_1_0", "en_1_0"]  # the answer in every language
    assert queries[1]["relevant"] == ["de_1_1", "en_1_1"]
    candidates = [r for r in rows if r["side"] == "candidate"]
    assert [c["id"] for c in candidates] == ["de_1_0", "de_1_1", "en_1_0", "en_1_1", "en_1_2"]
    assert candidates[4]["text"] == "The end."
    assert candidates[4]["context"] == "It is Ann. She lives in Rome. The end."
    alone = [row for _, row in read_xquad_r(tmp_path / "en.json")]
    assert [r["relevant"] for r in alone if r["side"] == "query"] == [["en_1_0"], ["en_1_1"]]
    with pytest.raises(XstiltsError, match="data file not found"):
        list(read_xquad_r(tmp_path / "en.json", companions={"zh": tmp_path / "zh.json"}))


CONTEXT = {
    "document_title": "Court",
    "document_url": "https://en.wikinews.org/wiki/Court",
    "document_id": "doc1",
    "language": "en",
    "text": "Court news.\nThe verdict came back for Smith, who stepped down {sic} in 2012. Done.",
    "sentence_spans": [{"start": 0, "end": 11}, {"start": 12, "end": 76}, {"start": 77, "end": 82}],
}
SMITH = {
    "example_id": "m-1",
    "entity_id": "Q1",
    "mention_span": {"start": 38, "end": 43, "text": "Smith"},
}
SMITH_QUERY = "Smith: The verdict came back for { Smith } , who stepped down (sic) in 2012."


def _entity(qid: str, description: str, language: str = "en") -> dict:
    return {
        "entity_id": qid,
        "title": qid,
        "description": description,
        "description_url": f"https://{language}.wikipedia.org/wiki/{qid}",
        "description_language": language,
        "sentence_spans": [{"start": 0, "end": len(description)}],
    }


def test_mewslix_pairs_reader_preprocesses_as_xtreme_r(tmp_path: Path) -> None:
    assert CONTEXT["text"][38:43] == "Smith"
    entity = _entity("Q1", "John Smith is a\nlawyer.  He was an AG.")
    entity["sentence_spans"] = [{"start": 0, "end": 23}, {"start": 25, "end": 38}]
    path = tmp_path / "wikipedia_pairs-train.jsonl"
    record = {"contextual_mention": {"context": CONTEXT, "mention": SMITH}, "entity": entity}
    path.write_text(json.dumps(record) + "\n\n", encoding="utf-8")
    [(line, row)] = list(read_mewslix_pairs(path))
    assert line == 1
    assert row == {
        "side": "pair",
        "id": "m-1",
        "text": SMITH_QUERY,
        "candidate_text": "John Smith is a lawyer. He was an AG.",
        "relevant": ["Q1"],
    }
    wrong = {**SMITH, "mention_span": {"start": 37, "end": 42, "text": "Smith"}}
    record = {"contextual_mention": {"context": CONTEXT, "mention": wrong}, "entity": entity}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(XstiltsError, match=r"wikipedia_pairs-train.jsonl:1: .*not at \[37:42\]"):
        list(read_mewslix_pairs(path))


def test_mewslix_mentions_reader_filters_language_and_adds_the_pool(tmp_path: Path) -> None:
    german = {**CONTEXT, "language": "de", "text": "Merkel sprach.", "sentence_spans": []}
    merkel = {
        "example_id": "m-2",
        "entity_id": "Q2",
        "mention_span": {"start": 0, "end": 6, "text": "Merkel"},
    }
    mentions = tmp_path / "wikinews_mentions-test.jsonl"
    lines = [{"context": CONTEXT, "mentions": [SMITH]}, {"context": german, "mentions": [merkel]}]
    mentions.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    pool = tmp_path / "candidate_set_entities.jsonl"
    entities = [_entity("Q1", "A lawyer."), _entity("Q2", "Eine Politikerin.", "de")]
    pool.write_text("".join(json.dumps(e) + "\n" for e in entities), encoding="utf-8")
    rows = [r for _, r in read_mewslix_mentions(mentions, {"candidates": pool}, language="de")]
    assert rows == [
        {"side": "query", "id": "m-2", "text": "Merkel: { Merkel } sprach.", "relevant": ["Q2"]},
        {"side": "candidate", "id": "Q1", "text": "A lawyer."},
        {"side": "candidate", "id": "Q2", "text": "Eine Politikerin."},
    ]
    everything = [r for _, r in read_mewslix_mentions(mentions, {"candidates": pool})]
    assert [r["id"] for r in everything if r["side"] == "query"] == ["m-1", "m-2"]
    with pytest.raises(XstiltsError, match="needs a 'candidates' file"):
        list(read_mewslix_mentions(mentions))


def test_readers_are_registered_and_load_through_a_spec(tmp_path: Path) -> None:
    for name in ("squad_sentences", "xquad_r", "mewslix_pairs", "mewslix_mentions"):
        assert name in READERS
    _write_xquad_r(tmp_path / "lareqa" / "xquad-r")
    test = {
        "path": "lareqa/xquad-r/{lang}.json",
        "file_format": "xquad_r",
        "companions": {"en": "en.json", "de": "de.json"},
    }
    payload = load_registry().get("lareqa").model_dump()
    spec = TaskSpec.model_validate({**payload, "splits": {"test": {"local": test}}})
    fmt = get_format("dual_encoder")
    loaded = load_split(
        spec, "test", "en", fields=fmt.fields, check_row=fmt.check_row(spec), mode="local",
        data_dir=tmp_path,
    )  # fmt: skip
    examples = loaded.examples
    assert examples["side"].count("query") == 2 and examples["side"].count("candidate") == 5
    assert examples["relevant"][:2] == [["en_1_0", "de_1_0"], ["en_1_1", "de_1_1"]]
    assert examples["relevant"][2:] == [[]] * 5


def test_catalog_tasks() -> None:
    registry = load_registry()
    lareqa, mewslix = registry.get("lareqa"), registry.get("mewslix")
    assert lareqa.languages == ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    assert mewslix.languages == ["ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk"]
    for spec in (lareqa, mewslix):
        assert (spec.format, spec.family, spec.metric) == ("dual_encoder", "retrieval", "map@20")
        assert spec.benchmarks == ["xtreme-r"]
        get_format(spec.format).options(spec)
        for split in ("train", "validation", "test"):
            assert spec.sources(split, "en", "local"), (spec.name, split)
    [test] = lareqa.sources("test", "th", "local")
    assert (test.path, test.file_format) == (["lareqa/xquad-r/th.json"], "xquad_r")
    assert sorted(test.companions) == lareqa.languages
    [dev] = mewslix.sources("validation", "de", "local")
    assert dev.file_format == "mewslix_mentions" and dev.reader_options == {"language": "de"}
    [dev] = mewslix.sources("validation", "en", "local")
    assert dev.path == ["mewslix/wikipedia_pairs-dev.jsonl"]
    assert lareqa.sources("validation", "de", "local") == []


# ---------------------------------------------------------------------------
# end to end on the tiny model


def _write_mewslix(folder: Path) -> dict[str, dict[str, list[str]]]:
    """Mewsli-X files for English and German; returns the gold entities per language."""
    folder.mkdir(parents=True)
    names = ["Ann", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hal", "Ida", "Jo", "Kim", "Lou"]
    entities = [
        _entity(f"Q{i}", f"{name} is a person called {name}.") for i, name in enumerate(names)
    ]
    with (folder / "candidate_set_entities.jsonl").open("w", encoding="utf-8") as out:
        for entity in entities:
            out.write(json.dumps(entity) + "\n")

    def contextual(name: str, language: str, template: str) -> tuple[dict, int]:
        text = template.format(name)
        start = text.index(name)
        context = {
            "document_title": name,
            "document_url": "u",
            "document_id": name,
            "language": language,
            "text": text,
            "sentence_spans": [{"start": 0, "end": len(text)}],
        }
        return context, start

    for split, count in (("train", 48), ("dev", 12)):
        with (folder / f"wikipedia_pairs-{split}.jsonl").open("w", encoding="utf-8") as out:
            for n in range(count):
                i = n % len(names)
                context, start = contextual(names[i], "en", "Yesterday {} went home.")
                mention = {
                    "example_id": f"{split}-{n}",
                    "entity_id": f"Q{i}",
                    "mention_span": {
                        "start": start,
                        "end": start + len(names[i]),
                        "text": names[i],
                    },
                }
                record = {
                    "contextual_mention": {"context": context, "mention": mention},
                    "entity": entities[i],
                }
                out.write(json.dumps(record) + "\n")
    gold: dict[str, dict[str, list[str]]] = {"en": {}, "de": {}}
    with (folder / "wikinews_mentions-test.jsonl").open("w", encoding="utf-8") as out:
        for language, template in (("en", "News: {} spoke."), ("de", "Heute sprach {}.")):
            for i, name in enumerate(names[:5]):
                context, start = contextual(name, language, template)
                mention = {
                    "example_id": f"{language}-{i}",
                    "entity_id": f"Q{i}",
                    "mention_span": {"start": start, "end": start + len(name), "text": name},
                }
                gold[language][mention["example_id"]] = [f"Q{i}"]
                out.write(json.dumps({"context": context, "mentions": [mention]}) + "\n")
    return gold


def _tiny_run(data_dir: Path, cache: Path, task: str, languages: list[str], **training):
    payload = {
        "seed": 3,
        "model": {"tiny": {}},
        "target": {
            "task": task,
            "training": {
                "learning_rate": 1e-3,
                "batch_size": 8,
                "max_steps": 4,
                "eval_every_steps": 2,
                **training,
            },
        },
        "evaluation": {"languages": languages},
        "data": {"source": "local", "data_dir": str(data_dir), "cache_dir": str(cache)},
    }
    return parse_config(payload)


def test_mewslix_end_to_end_writes_the_submission_layout(tmp_path, feature_cache) -> None:
    gold = _write_mewslix(tmp_path / "data" / "mewslix")
    config = _tiny_run(tmp_path / "data", feature_cache, "mewslix", ["en", "de"], max_length=32)
    outcome = run_experiment(config, tmp_path / "runs")
    training = json.loads((outcome.run_dir / "training.json").read_text("utf-8"))
    assert training["steps"] == 4
    assert [v["step"] for v in training["validation"]] == [2, 4]
    assert all(0 <= v["tasks"]["mewslix"]["map@20"] <= 100 for v in training["validation"])
    for lang in ("en", "de"):
        path = outcome.run_dir / "predictions" / "mewslix" / f"test-{lang}.json"
        predicted = json.loads(path.read_text(encoding="utf-8"))
        assert list(predicted) == list(gold[lang])  # example ids, in file order
        for ranked in predicted.values():
            assert len(ranked) == 12  # the whole pool: fewer than 20 entities
            assert sorted(ranked) == sorted(f"Q{i}" for i in range(12))
        expected = mean_average_precision_at_k(
            [predicted[q] for q in gold[lang]], [set(g) for g in gold[lang].values()]
        )
        scores = outcome.results["languages"][lang]
        assert scores["map@20"] == pytest.approx(expected["map@20"])
        assert scores["num_examples"] == 5 + 12  # queries and the pool


def test_lareqa_end_to_end_on_xquad_r_files(tmp_path, feature_cache) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "squad").mkdir(parents=True)
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (data_dir / "squad" / name).write_text(json.dumps(SQUAD), encoding="utf-8")
    languages = load_registry().get("lareqa").languages
    _write_xquad_r(data_dir / "lareqa" / "xquad-r", {lang: XQUAD_R["en"] for lang in languages})
    _write_xquad_r(data_dir / "lareqa" / "xquad-r", {"de": XQUAD_R["de"]})
    config = _tiny_run(data_dir, feature_cache, "lareqa", ["en", "de"], max_length=48)
    outcome = run_experiment(config, tmp_path / "runs")
    predicted = json.loads(
        (outcome.run_dir / "predictions" / "lareqa" / "test-de.json").read_text("utf-8")
    )
    assert list(predicted) == ["x1", "x2"]
    pool = 2 + 3 * 10  # German has two sentences, every other file three
    assert all(len(r) == 20 and len(set(r)) == 20 for r in predicted.values())
    assert all(r.count("de_1_0") <= 1 for r in predicted.values())
    scores = outcome.results["languages"]["de"]
    assert scores["num_examples"] == 2 + pool
    relevant_x1 = {"de_1_0", *(f"{lang}_1_0" for lang in languages if lang != "de")}
    expected = mean_average_precision_at_k(
        [predicted["x1"], predicted["x2"]],
        [relevant_x1, {"de_1_1", *(f"{lang}_1_1" for lang in languages if lang != "de")}],
    )
    assert scores["map@20"] == pytest.approx(expected["map@20"])
