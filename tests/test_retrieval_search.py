"""Exact nearest-neighbour search: torch blocked path vs numpy oracles, faiss agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xstilts.errors import XstiltsError
from xstilts.retrieval import search
from xstilts.retrieval.search import (
    RetrievalInputError,
    faiss_available,
    l2_normalize,
    nearest_neighbors,
    resolve_backend,
)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny blocks mean thousands of tiny ops; on a busy 2-core machine waking torch's
    second thread costs about a millisecond per op. Results do not depend on threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def oracle_knn(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float64: full score matrix, rows sorted by (score desc, index asc)."""
    scores = queries.astype(np.float64) @ keys.astype(np.float64).T
    columns = np.broadcast_to(np.arange(keys.shape[0]), scores.shape)
    order = np.lexsort((columns, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, -1), order


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def integer_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Small integers: every inner product is exact in float32 and ties are frequent."""
    return rng.integers(-2, 3, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("block_size", [7, 64, 100, 4096])
@pytest.mark.parametrize("k", [1, 4])
def test_torch_path_matches_oracle_exactly_on_integer_data(block_size: int, k: int) -> None:
    rng = np.random.default_rng(block_size * 10 + k)
    queries = integer_vectors(rng, 250, 6)
    keys = integer_vectors(rng, 333, 6)
    scores, indices = nearest_neighbors(queries, keys, k, backend="torch", block_size=block_size)
    want_scores, want_indices = oracle_knn(queries, keys, k)
    assert scores.shape == indices.shape == (250, k)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    # Many ties here: the lower key index must win, exactly as in the oracle.
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize("block_size", [7, 64, 100, 4096])
@pytest.mark.parametrize("k", [1, 4])
def test_torch_path_matches_oracle_on_random_unit_vectors(block_size: int, k: int) -> None:
    rng = np.random.default_rng(1000 + block_size + k)
    queries = unit_vectors(rng, 250, 32)
    keys = unit_vectors(rng, 333, 32)
    scores, indices = nearest_neighbors(queries, keys, k, backend="torch", block_size=block_size)
    want_scores, want_indices = oracle_knn(queries, keys, k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    np.testing.assert_array_equal(indices, want_indices)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_k_equal_to_number_of_keys_returns_every_key_sorted() -> None:
    rng = np.random.default_rng(3)
    queries = integer_vectors(rng, 20, 5)
    keys = integer_vectors(rng, 9, 5)
    _, indices = nearest_neighbors(queries, keys, 9, backend="torch", block_size=4)
    _, want = oracle_knn(queries, keys, 9)
    np.testing.assert_array_equal(indices, want)
    assert all(sorted(row) == list(range(9)) for row in indices.tolist())


def test_ties_go_to_the_lower_index_across_key_blocks() -> None:
    keys = np.zeros((10, 3), np.float32)
    keys[:, 0] = [0.5, 1, 0.5, 1, 0.2, 1, 0.5, 0.9, 1, 0.5]
    query = np.array([[1.0, 0.0, 0.0]], np.float32)
    for block_size in (1, 2, 3, 10):
        _, indices = nearest_neighbors(query, keys, 6, backend="torch", block_size=block_size)
        assert indices.tolist() == [[1, 3, 5, 8, 7, 0]]


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
@pytest.mark.parametrize("k", [1, 3, 40])
def test_chunked_selection_keeps_the_exact_top_k_with_ties(
    monkeypatch: pytest.MonkeyPatch, chunk: int, k: int
) -> None:
    """Chunks of a block, a short last chunk, k above the number of chunks: the lists
    (ties included: integer data) are those of the float64 oracle."""
    monkeypatch.setattr(search, "CHUNK", chunk)
    rng = np.random.default_rng(chunk + k)
    queries = integer_vectors(rng, 120, 4)
    keys = integer_vectors(rng, 1000, 4)
    scores, indices = nearest_neighbors(queries, keys, k, backend="torch", block_size=96)
    want_scores, want_indices = oracle_knn(queries, keys, k)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


def test_top_k_selection_only_sees_rows_that_can_improve_and_their_best_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a query's list is full, a key block whose best score is not above its k-th
    is skipped; the others are searched in their k best chunks, never whole."""
    calls: list[tuple[int, int]] = []
    original = search._block_topk

    def spy(sim: torch.Tensor, kk: int):
        calls.append(tuple(sim.shape))
        return original(sim, kk)

    monkeypatch.setattr(search, "_block_topk", spy)
    monkeypatch.setattr(search, "CHUNK", 50)
    rng = np.random.default_rng(8)
    queries, keys = unit_vectors(rng, 200, 16), unit_vectors(rng, 5000, 16)
    _, indices = nearest_neighbors(queries, keys, 2, backend="torch", block_size=250)
    np.testing.assert_array_equal(indices, oracle_knn(queries, keys, 2)[1])
    # Per key block: the 5 chunk maxima of the rows searched, then their 2 best chunks.
    assert {width for _, width in calls} == {5, 100}
    searched = sum(rows for rows, width in calls if width == 100)
    # Random keys: block j holds one of a row's best 2 so far with chance about 2/j.
    assert searched < 0.5 * 200 * (5000 // 250)


def test_accepts_torch_tensors_and_float64_and_returns_numpy() -> None:
    rng = np.random.default_rng(4)
    queries = unit_vectors(rng, 17, 8).astype(np.float64)
    keys = unit_vectors(rng, 23, 8)
    from_numpy = nearest_neighbors(queries, keys, 3, backend="torch")
    from_torch = nearest_neighbors(torch.from_numpy(queries), torch.from_numpy(keys), 3)
    assert isinstance(from_torch[0], np.ndarray) and isinstance(from_torch[1], np.ndarray)
    np.testing.assert_array_equal(from_numpy[1], from_torch[1])
    np.testing.assert_allclose(from_numpy[0], from_torch[0], atol=1e-6)


def test_empty_queries_give_empty_results() -> None:
    keys = np.eye(4, dtype=np.float32)
    scores, indices = nearest_neighbors(np.zeros((0, 4), np.float32), keys, 2, backend="torch")
    assert scores.shape == (0, 2) and indices.shape == (0, 2)


def test_k_larger_than_number_of_keys_is_a_clear_error() -> None:
    keys = np.eye(3, dtype=np.float32)
    with pytest.raises(RetrievalInputError, match=r"k=4 .* only 3 keys"):
        nearest_neighbors(keys, keys, 4, backend="torch")
    # The error is both a ValueError and the package's user-facing error type.
    with pytest.raises(ValueError):
        nearest_neighbors(keys, keys, 4)
    with pytest.raises(XstiltsError):
        nearest_neighbors(keys, keys, 4)


@pytest.mark.parametrize(
    ("queries", "keys", "k", "kwargs", "message"),
    [
        (np.ones((2, 3)), np.ones((4, 5)), 1, {}, "dimension 3 but keys have dimension 5"),
        (np.ones(3), np.ones((4, 3)), 1, {}, "2-D"),
        (np.ones((2, 3)), np.ones((4, 3)), 0, {}, "at least 1"),
        (np.ones((2, 3)), np.ones((4, 3)), 1, {"backend": "annoy"}, "unknown retrieval backend"),
        (np.ones((2, 3)), np.ones((4, 3)), 1, {"backend": "torch", "block_size": 0}, "block_size"),
        (np.full((2, 3), np.nan), np.ones((4, 3)), 1, {"backend": "torch"}, "NaN"),
    ],
)
def test_bad_arguments(queries, keys, k, kwargs, message) -> None:
    with pytest.raises(RetrievalInputError, match=message):
        nearest_neighbors(queries, keys, k, **kwargs)


def test_without_faiss_auto_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "_import_faiss", lambda: None)
    assert not faiss_available()
    assert resolve_backend("auto") == "torch"
    with pytest.raises(RetrievalInputError, match="faiss is not installed"):
        resolve_backend("faiss")
    rng = np.random.default_rng(5)
    queries, keys = unit_vectors(rng, 30, 8), unit_vectors(rng, 40, 8)
    _, indices = nearest_neighbors(queries, keys, 2)
    np.testing.assert_array_equal(indices, oracle_knn(queries, keys, 2)[1])


def test_score_matrices_never_exceed_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spy on the one function that builds score matrices: each is at most block x block."""
    shapes: list[tuple[int, int]] = []
    original = search._block_scores

    def spy(query_block: torch.Tensor, key_block: torch.Tensor, buffer: torch.Tensor):
        assert buffer.numel() <= block_size * block_size
        result = original(query_block, key_block, buffer)
        shapes.append(tuple(result.shape))
        return result

    monkeypatch.setattr(search, "_block_scores", spy)
    rng = np.random.default_rng(6)
    n, m, block_size = 500, 700, 64
    queries, keys = unit_vectors(rng, n, 16), unit_vectors(rng, m, 16)
    nearest_neighbors(queries, keys, 4, backend="torch", block_size=block_size)
    assert len(shapes) == math.ceil(n / block_size) * math.ceil(m / block_size)
    assert max(rows for rows, _ in shapes) <= block_size
    assert max(cols for _, cols in shapes) <= block_size
    # Every query was compared with every key exactly once.
    assert sum(r * c for r, c in shapes) == n * m


def test_no_tensor_larger_than_a_block_is_created() -> None:
    """Watch every torch op of the search: no output approaches the n x m matrix."""
    dispatch = pytest.importorskip("torch.utils._python_dispatch")

    class LargestOutput(dispatch.TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in out if isinstance(out, tuple | list) else (out,):
                if isinstance(value, torch.Tensor):
                    self.largest = max(self.largest, value.numel())
            return out

    rng = np.random.default_rng(7)
    n = m = 600
    d, k, block_size = 8, 4, 50
    queries = torch.from_numpy(unit_vectors(rng, n, d))
    keys = torch.from_numpy(unit_vectors(rng, m, d))
    with LargestOutput() as mode:
        _, indices = search._torch_search(queries, keys, k, block_size)
    bound = max(block_size * block_size, n * k, n * d)
    assert 0 < mode.largest <= bound < n * m // 10
    np.testing.assert_array_equal(indices.numpy(), oracle_knn(queries.numpy(), keys.numpy(), k)[1])


def test_l2_normalize_numpy_and_torch() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], np.float32)
    got = l2_normalize(x)
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7)
    assert got.dtype == np.float32
    assert x[0, 0] == 3.0  # input untouched
    got_t = l2_normalize(torch.from_numpy(x))
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), got, atol=1e-7)
    assert l2_normalize(np.array([[2, 0]])).dtype == np.float32


@needs_faiss
@pytest.mark.parametrize("k", [1, 4])
def test_faiss_and_torch_agree_on_random_unit_vectors(k: int) -> None:
    rng = np.random.default_rng(8 + k)
    queries, keys = unit_vectors(rng, 400, 48), unit_vectors(rng, 900, 48)
    f_scores, f_indices = nearest_neighbors(queries, keys, k, backend="faiss")
    t_scores, t_indices = nearest_neighbors(queries, keys, k, backend="torch", block_size=128)
    assert f_scores.dtype == np.float32 and f_indices.dtype == np.int64
    np.testing.assert_allclose(f_scores, t_scores, atol=1e-5)
    np.testing.assert_array_equal(f_indices, t_indices)
    # "auto" means faiss when it is importable.
    np.testing.assert_array_equal(nearest_neighbors(queries, keys, k)[1], f_indices)


@needs_faiss
def test_faiss_lists_equal_scores_lowest_index_first() -> None:
    """faiss itself returns equal scores highest index first; the wrapper re-orders them."""
    keys = np.zeros((8, 2), np.float32)
    keys[:, 0] = [0.5, 1, 0.5, 1, 0.2, 1, 0.5, 0.9]
    query = np.array([[1.0, 0.0]], np.float32)
    scores, indices = nearest_neighbors(query, keys, 4, backend="faiss")
    assert indices.tolist() == [[1, 3, 5, 7]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 0.8999999761581421]]
    # With a tie straddling the cut, only the scores are promised to agree with torch.
    f_scores, _ = nearest_neighbors(query, keys, 6, backend="faiss")
    t_scores, _ = nearest_neighbors(query, keys, 6, backend="torch")
    np.testing.assert_array_equal(f_scores, t_scores)


@needs_faiss
def test_faiss_exact_scores_agree_on_integer_data() -> None:
    rng = np.random.default_rng(9)
    queries, keys = integer_vectors(rng, 100, 6), integer_vectors(rng, 150, 6)
    f_scores, _ = nearest_neighbors(queries, keys, 4, backend="faiss")
    t_scores, _ = nearest_neighbors(queries, keys, 4, backend="torch", block_size=32)
    np.testing.assert_array_equal(f_scores, t_scores)
