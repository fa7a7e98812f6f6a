"""The evaluator's two savings: a candidate pool shared by every language is embedded
once (and again only when its tokens or the language adapter change), and several
processes each run a contiguous share of the features, gathered in feature order."""

from __future__ import annotations

import itertools
import threading

import datasets
import numpy as np
import pytest
import torch

from xstilts import evaluate, inference
from xstilts.config import ModelConfig, TinyModelConfig
from xstilts.evaluate import EvaluationSet, Evaluator, Sharding, token_digest
from xstilts.formats.dual_encoder import CANDIDATE, DualEncoder
from xstilts.modeling import MultiTaskModel, build_encoder
from xstilts.tasks import TaskSpec

SPEC = TaskSpec(
    name="pool_test",
    family="retrieval",
    format="dual_encoder",
    metric="map@20",
    options={"search_backend": "torch", "pooling": "mean"},
)
POOL = [f"candidate sentence number {i} " + "word " * (i % 5) for i in range(9)]


@pytest.fixture(scope="module")
def model(tokenizer) -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = build_encoder(ModelConfig(tiny=TinyModelConfig()), tokenizer)
    fmt = DualEncoder()
    model = MultiTaskModel(
        encoder, {SPEC.head_name: fmt.build_head(SPEC, encoder)}, {SPEC.head_name: fmt}
    )
    # In eval mode already: the threads standing in for processes share this one
    # model, and one restoring training mode would switch dropout on for the other.
    return model.eval()


def language_split(tokenizer, queries: list[str], pool: list[str] = POOL) -> EvaluationSet:
    """Queries of one language followed by the pool every language searches."""
    rows = [
        {"side": "query", "id": f"q{i}", "text": q, "relevant": [f"c{i}"]}
        for i, q in enumerate(queries)
    ]
    rows += [{"side": "candidate", "id": f"c{i}", "text": c} for i, c in enumerate(pool)]
    check = DualEncoder().check_row(SPEC)
    examples = datasets.Dataset.from_list([check(dict(r)) for r in rows])
    features = DualEncoder().encode(
        examples[:], list(range(len(examples))), tokenizer=tokenizer, spec=SPEC, max_length=32
    )
    return EvaluationSet(examples, datasets.Dataset.from_dict(features))


def evaluator(model, tokenizer, sharding: Sharding | None = None) -> Evaluator:
    return Evaluator(
        model,
        SPEC,
        DualEncoder(),
        tokenizer=tokenizer,
        batch_size=4,
        device=torch.device("cpu"),
        sharding=sharding,
    )


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many features each model pass was given."""
    counts: list[int] = []
    original = inference.run_inference

    def spy(model, head, fmt, features, **kwargs):
        counts.append(len(features))
        return original(model, head, fmt, features, **kwargs)

    monkeypatch.setattr(inference, "run_inference", spy)
    return counts


def assert_same_outputs(got, want) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["embedding"], w["embedding"], atol=1e-5)


def test_the_shared_pool_is_embedded_once_for_every_language(model, tokenizer, ran) -> None:
    german = language_split(tokenizer, ["wo ist der Satz", "noch eine Frage"])
    french = language_split(tokenizer, ["où est la phrase", "une autre", "et encore une"])
    shared = evaluator(model, tokenizer)
    got_de, got_fr = shared.outputs(german, "de"), shared.outputs(french, "fr")
    assert ran == [9, 2, 3]  # the pool, German's queries, French's queries
    ran.clear()
    assert_same_outputs(got_de, evaluator(model, tokenizer).outputs(german, "de"))
    assert_same_outputs(got_fr, evaluator(model, tokenizer).outputs(french, "fr"))
    # Every feature got its own output: the pool's rows follow each language's queries.
    query = np.asarray(german.features["role"]) != CANDIDATE
    assert not np.allclose(got_de[0]["embedding"], got_de[int(query.sum())]["embedding"])


def test_another_pool_or_language_adapter_is_embedded_again(
    model, tokenizer, ran, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = evaluator(model, tokenizer)
    shared.outputs(language_split(tokenizer, ["a question"]), "de")
    other_pool = language_split(tokenizer, ["a question"], [*POOL[:-1], "a different one"])
    shared.outputs(other_pool, "fr")
    assert ran == [9, 1, 9, 1]
    ran.clear()
    monkeypatch.setattr(evaluate, "_language_adapter_in_use", lambda model: 12345)
    shared.outputs(other_pool, "fr")  # same tokens, another language adapter
    assert ran == [9, 1]


def test_token_digest_depends_on_the_tokens_and_their_order(tokenizer) -> None:
    split = language_split(tokenizer, ["q"])
    pool = np.flatnonzero(np.asarray(split.features["role"]) == CANDIDATE)
    same = language_split(tokenizer, ["another query entirely"])
    assert token_digest(split.features, pool) == token_digest(same.features, pool + 0)
    assert token_digest(split.features, pool) != token_digest(split.features, pool[::-1])
    assert token_digest(split.features, pool[:-1]) != token_digest(split.features, pool)


@pytest.mark.parametrize("count", [0, 1, 7, 8, 10])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_are_contiguous_and_cover_every_feature_once(count: int, world: int) -> None:
    bounds = [Sharding(rank, world, lambda x: x).bounds(count) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


class ThreadGather:
    """all_gather between threads standing in for processes: every rank gets the
    ranks' lists concatenated in rank order."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world)
        self.parts: dict[int, list] = {}

    def for_rank(self, rank: int):
        def gather(part: list) -> list:
            self.parts[rank] = part
            self.barrier.wait()
            merged = [row for r in sorted(self.parts) for row in self.parts[r]]
            self.barrier.wait()  # everyone has read before the next call overwrites
            return merged

        return gather


def test_two_processes_each_run_their_share_and_gather_everything(model, tokenizer, ran) -> None:
    split = language_split(tokenizer, ["first question", "second", "third one here"])
    want = evaluator(model, tokenizer).outputs(split, "one process")
    ran.clear()
    gather = ThreadGather(2)
    got: dict[int, list] = {}

    def process(rank: int) -> None:
        sharded = evaluator(model, tokenizer, Sharding(rank, 2, gather.for_rank(rank)))
        got[rank] = sharded.outputs(split, f"rank {rank}")

    threads = [threading.Thread(target=process, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Pool (9) and queries (3), each cut in two: ranks ran 5 + 2 and 4 + 1 features.
    assert sorted(ran) == [1, 2, 4, 5]
    assert_same_outputs(got[0], want)
    assert_same_outputs(got[1], want)
