"""Exact k-nearest-neighbour search by inner product, with or without faiss.

Sentence retrieval (Tatoeba, BUCC) compares L2-normalised sentence embeddings,
so the inner product *is* the cosine similarity. Two backends compute the same
exact search:

``"faiss"``
    ``faiss.IndexFlatIP`` (brute force, exact), used when the optional
    ``faiss-cpu`` / ``faiss-gpu`` package is importable. faiss is never required.
``"torch"``
    A blocked search: queries are cut into blocks of ``block_size`` rows and
    keys into blocks of ``block_size`` rows; each block pair's score matrix is
    written into one preallocated buffer, and each query keeps a running top-k
    merged with the top-k of every key block. Only one ``block_size x
    block_size`` score matrix exists at a time, so memory is
    ``O(block_size**2 + n*k)`` and a 100,000 x 100,000 similarity matrix is
    never built. The torch path runs on the device of ``queries`` when it is a
    tensor (CPU for numpy input).

    Selection: ``torch.topk`` over a whole score matrix costs more than the
    matrix product, so it is avoided. Each row's columns are cut into chunks of
    ``CHUNK`` (128); one vectorised ``amax`` gives every chunk's maximum. A row
    whose list is full and whose best score in the key block is not above its
    current k-th score cannot change (the block's keys also lose ties, having
    higher indices) and is skipped; the other rows search only their ``k`` best
    chunks (by maximum), where their best ``k`` keys of the block always lie
    (see ``_chunked_topk``). After a few key blocks most rows are skipped. The
    result is the same exact top-k as a full ``torch.topk``; the default block
    (2048, a 16 MiB score matrix) keeps the scores in cache between the product
    and the selection.

Tie-breaking
    torch: exact and deterministic. Neighbours are ordered by score (highest
    first) and, among equal scores, by key index (lowest first); in particular
    when equal scores compete for the last of the k places, the lower key index
    wins. Equality means bit-equal float32 scores as computed by the matmul.
    faiss: faiss documents no tie rule. Observed with faiss-cpu 1.15.1: when
    several keys tie for the last places, the ones kept are *not* always the
    lowest indices (nor the highest), and equal scores come back in decreasing
    index order. This module re-orders each faiss row by (score desc, index
    asc), so the two backends list the same neighbours in the same order
    whenever no tie straddles the k-th place; when one does, the scores agree
    but the tied indices may differ. faiss and torch also sum in different
    orders, so scores may differ in the last bits and near-ties may flip.
"""

from __future__ import annotations

import importlib
from typing import Literal

import numpy as np
import torch

from xstilts.errors import XstiltsError

Backend = Literal["auto", "faiss", "torch"]
Array = torch.Tensor | np.ndarray

DEFAULT_BLOCK_SIZE = 2048
"""Rows per query block and per key block of the torch path (a 16 MiB score matrix)."""
CHUNK = 128
"""Key columns per chunk of the top-k selection (see the module docstring)."""

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "RetrievalInputError",
    "faiss_available",
    "l2_normalize",
    "nearest_neighbors",
    "resolve_backend",
]


class RetrievalInputError(XstiltsError, ValueError):
    """Bad arguments to a retrieval function (shapes, k, backend)."""


def _import_faiss():
    """Return the faiss module, or None when it is not installed."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def faiss_available() -> bool:
    """True when ``import faiss`` works in this environment."""
    return _import_faiss() is not None


def resolve_backend(backend: str) -> Literal["faiss", "torch"]:
    """Map ``"auto"`` to ``"faiss"`` when importable, else ``"torch"``; check names."""
    if backend == "auto":
        return "faiss" if faiss_available() else "torch"
    if backend == "faiss":
        if not faiss_available():
            raise RetrievalInputError(
                "backend='faiss' was requested but faiss is not installed; "
                "install faiss-cpu or use backend='torch' (or 'auto')"
            )
        return "faiss"
    if backend == "torch":
        return "torch"
    raise RetrievalInputError(
        f"unknown retrieval backend {backend!r}; expected 'auto', 'faiss' or 'torch'"
    )


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
    """Scale each row of ``x`` to unit L2 norm; returns the same kind (numpy or torch).

    Rows whose norm is below ``eps`` (all-zero rows) are divided by ``eps``
    instead, so they stay (near) zero rather than becoming NaN. numpy input
    keeps its floating dtype (integers become float32); the input is not
    modified.
    """
    if isinstance(x, torch.Tensor):
        if not torch.is_floating_point(x):
            x = x.float()
        norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / norms.clamp_min(eps)
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, eps).astype(arr.dtype, copy=False)


def _check_inputs(queries: Array, keys: Array, k: int) -> tuple[int, int, int]:
    if queries.ndim != 2 or keys.ndim != 2:
        raise RetrievalInputError(
            f"queries and keys must be 2-D [rows, dim]; got shapes {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )
    n, d = int(queries.shape[0]), int(queries.shape[1])
    m, dk = int(keys.shape[0]), int(keys.shape[1])
    if d != dk:
        raise RetrievalInputError(
            f"queries have dimension {d} but keys have dimension {dk}; they must match"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise RetrievalInputError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise RetrievalInputError(f"k must be at least 1, got {k}")
    if k > m:
        raise RetrievalInputError(
            f"k={k} nearest neighbours requested but there are only {m} keys; "
            f"pass k <= {m} (e.g. k=min(k, len(keys)))"
        )
    return n, m, d


def _as_float32_tensor(x: Array, device: torch.device) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device, dtype=torch.float32)


def _as_float32_numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _require_finite(x: torch.Tensor | np.ndarray, name: str) -> None:
    ok = bool(torch.isfinite(x).all()) if isinstance(x, torch.Tensor) else np.isfinite(x).all()
    if not ok:
        raise RetrievalInputError(f"{name} contain NaN or infinite values")


def nearest_neighbors(
    queries: Array,
    keys: Array,
    k: int,
    *,
    backend: Backend = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` keys with the highest inner product for every query.

    Args:
        queries: ``[n, d]`` tensor or array (cast to float32).
        keys: ``[m, d]`` tensor or array (cast to float32).
        k: neighbours per query, ``1 <= k <= m`` (``k > m`` raises).
        backend: ``"auto"`` (faiss if importable, else torch), ``"faiss"`` or
            ``"torch"``.
        block_size: rows per query block and per key block in the torch path
            (ignored by faiss, which blocks internally).

    Returns:
        ``(scores, indices)``: numpy arrays of shape ``[n, k]``, float32 and
        int64, each row sorted by decreasing score. See the module docstring
        for the tie rule of each backend.

    Raises:
        RetrievalInputError (a ValueError): bad shapes, ``k`` out of range,
        non-finite values, unknown or unavailable backend.
    """
    if not isinstance(queries, torch.Tensor):
        queries = np.asarray(queries)
    if not isinstance(keys, torch.Tensor):
        keys = np.asarray(keys)
    n, _m, _d = _check_inputs(queries, keys, k)
    k = int(k)
    chosen = resolve_backend(backend)
    if chosen == "faiss":
        q = _as_float32_numpy(queries)
        x = _as_float32_numpy(keys)
        _require_finite(q, "queries")
        _require_finite(x, "keys")
        if n == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        return _faiss_search(q, x, k)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise RetrievalInputError(f"block_size must be a positive integer, got {block_size!r}")
    device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    q = _as_float32_tensor(queries, device)
    x = _as_float32_tensor(keys, device)
    _require_finite(q, "queries")
    _require_finite(x, "keys")
    scores, indices = _torch_search(q, x, k, block_size)
    return scores.cpu().numpy(), indices.cpu().numpy()


def _faiss_search(q: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    faiss = _import_faiss()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    scores, indices = index.search(q, k)
    scores = scores.astype(np.float32, copy=False)
    indices = indices.astype(np.int64, copy=False)
    # faiss lists equal scores in no promised order: make it (score desc, index asc).
    order = np.lexsort((indices, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(indices, order, -1)


def _block_scores(
    query_block: torch.Tensor, key_block: torch.Tensor, buffer: torch.Tensor
) -> torch.Tensor:
    """Inner products of one query block with one key block: ``[bq, bk]``.

    Written into (the front of) ``buffer``, one ``block_size**2`` allocation
    reused for every block pair; this is the only place the torch path builds
    a score matrix (tests spy on it).
    """
    rows, cols = query_block.shape[0], key_block.shape[0]
    out = buffer[: rows * cols].view(rows, cols)
    return torch.mm(query_block, key_block.T, out=out)


def _block_topk(sim: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``kk`` of every row of ``sim`` with ties at the cut going to lower columns.

    ``torch.topk`` does not promise which of several equal values it keeps, so
    one extra value is taken: where the (kk+1)-th value equals the kk-th, the
    choice is ambiguous and those rows alone are redone with a stable sort.
    """
    width = sim.shape[1]
    if kk == 1:
        # Documented: on several maximal values, max returns the first index.
        values, cols = torch.max(sim, dim=1, keepdim=True)
        return values, cols
    if kk >= width:
        values, cols = torch.sort(sim, dim=1, descending=True, stable=True)
        return values, cols
    values, cols = torch.topk(sim, kk + 1, dim=1, largest=True, sorted=True)
    ambiguous = values[:, kk - 1] == values[:, kk]
    values, cols = values[:, :kk], cols[:, :kk]
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().squeeze(1)
        fixed_values, fixed_cols = torch.sort(sim[rows], dim=1, descending=True, stable=True)
        values = values.clone()
        cols = cols.clone()
        values[rows] = fixed_values[:, :kk]
        cols[rows] = fixed_cols[:, :kk]
    return values, cols


def _merge(
    scores: torch.Tensor, indices: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the best ``k`` of each row, ordered by (score desc, index asc)."""
    by_index = torch.argsort(indices, dim=1)
    scores = scores.gather(1, by_index)
    indices = indices.gather(1, by_index)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), indices.gather(1, order)


def _chunk_maxima(sim: torch.Tensor, chunk: int) -> torch.Tensor:
    """``[rows, chunks]``: each row's largest score in every ``chunk`` columns (the
    last chunk may be shorter)."""
    rows, width = sim.shape
    whole = width - width % chunk
    parts = []
    if whole:
        parts.append(sim[:, :whole].reshape(rows, whole // chunk, chunk).amax(dim=2))
    if whole < width:
        parts.append(sim[:, whole:].amax(dim=1, keepdim=True))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _chunked_topk(
    sim: torch.Tensor, rows: torch.Tensor | None, maxima: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``_block_topk`` of the given ``rows`` of ``sim`` (all if None), searching only
    each row's ``k`` best chunks (``maxima`` are those rows' chunk maxima).

    Exact, ties included: a key outside the chosen chunks is outranked by the first
    maximum of each of the ``k`` chosen ones (a higher score, or an equal score at
    a lower column), and the chosen chunks are searched in column order.
    """
    width = sim.shape[1]
    kept = min(k, maxima.shape[1])
    if kept * chunk >= width or width % chunk:  # no saving, or a short last chunk
        return _block_topk(sim if rows is None else sim.index_select(0, rows), k)
    _, chosen = _block_topk(maxima, kept)
    chosen = torch.sort(chosen, dim=1).values  # column order: ties keep the lower column
    chunks = sim.view(sim.shape[0], width // chunk, chunk)
    if rows is None:
        rows = torch.arange(sim.shape[0], device=sim.device)
    picked = chunks[rows.unsqueeze(1), chosen].reshape(len(rows), kept * chunk)
    values, positions = _block_topk(picked, k)
    return values, chosen.gather(1, positions // chunk) * chunk + positions % chunk


class _RunningTopK:
    """The best ``k`` keys seen so far by each query of a block, updated block by block.

    Keys arrive in increasing index order, so a key equal to a row's k-th score
    loses the tie: a key block can only change the rows whose best score in it is
    strictly above their k-th (every row, while the lists are shorter than k).
    """

    def __init__(self, rows: int, k: int, device: torch.device) -> None:
        self.k = k
        self.scores = torch.empty((rows, 0), dtype=torch.float32, device=device)
        self.indices = torch.empty((rows, 0), dtype=torch.int64, device=device)

    def update(self, sim: torch.Tensor, offset: int, chunk: int) -> None:
        """Merge the keys of score matrix ``sim`` (key ``offset + j`` in column ``j``)."""
        kk = min(self.k, sim.shape[1])
        maxima = _chunk_maxima(sim, chunk)
        rows = None
        if self.scores.shape[1] == self.k:
            rows = (maxima.amax(dim=1) > self.scores[:, -1]).nonzero().squeeze(1)
            if rows.numel() == 0:
                return
            if rows.numel() == sim.shape[0]:
                rows = None
            else:
                maxima = maxima.index_select(0, rows)
        values, cols = _chunked_topk(sim, rows, maxima, kk, chunk)
        cols += offset
        if rows is None:
            self.scores, self.indices = _merge(
                torch.cat([self.scores, values], dim=1),
                torch.cat([self.indices, cols], dim=1),
                self.k,
            )
            return
        scores, indices = _merge(
            torch.cat([self.scores[rows], values], dim=1),
            torch.cat([self.indices[rows], cols], dim=1),
            self.k,
        )
        self.scores[rows] = scores
        self.indices[rows] = indices


def _torch_search(
    queries: torch.Tensor, keys: torch.Tensor, k: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = queries.shape[0], keys.shape[0]
    device = queries.device
    chunk = min(CHUNK, block_size)
    out_scores = torch.empty((n, k), dtype=torch.float32, device=device)
    out_indices = torch.empty((n, k), dtype=torch.int64, device=device)
    buffer = torch.empty(
        min(n, block_size) * min(m, block_size), dtype=torch.float32, device=device
    )
    with torch.inference_mode():
        for q0 in range(0, n, block_size):
            q_block = queries[q0 : q0 + block_size]
            best = _RunningTopK(q_block.shape[0], k, device)
            for k0 in range(0, m, block_size):
                best.update(_block_scores(q_block, keys[k0 : k0 + block_size], buffer), k0, chunk)
            out_scores[q0 : q0 + block_size] = best.scores
            out_indices[q0 : q0 + block_size] = best.indices
    return out_scores, out_indices
