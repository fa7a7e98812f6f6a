"""BUCC 2018 bitext mining: margin scoring, candidate extraction, F1-optimal threshold.

This reproduces the mining of LASER (facebookresearch/LASER,
``source/mine_bitexts.py``, ``--mode mine``) as XTREME runs it
(google-research/xtreme, ``third_party/utils_retrieve.py``: ``mine_bitext``,
``read_candidate2score``, ``bucc_optimize``, ``bucc_extract``), on arrays and
lists instead of files. Inputs are sentence embeddings; they are L2-normalised
here (as LASER does with ``faiss.normalize_L2``), so similarities are cosines.

Scoring (``margin="ratio"``, the default)::

    score(x, y) = cos(x, y) / (  mean_{z in NN_k(x)} cos(x, z) / 2
                               + mean_{z in NN_k(y)} cos(y, z) / 2)

where ``NN_k(x)`` are the ``k`` nearest targets of source ``x`` and ``NN_k(y)``
the ``k`` nearest sources of target ``y`` (``k`` is clipped to the size of the
other side, as LASER does). ``"distance"`` subtracts the same denominator
instead of dividing; ``"absolute"`` is the plain cosine.

Candidates (``retrieval="max"``, the default):

1. forward: every source ``i`` is scored against its k nearest targets; its
   candidate is the best-scoring one (first in neighbour order on equal scores);
2. backward: the same for every target ``j`` against its k nearest sources;
3. the ``n_src + n_tgt`` candidates are sorted by score, highest first
   (stable: forward candidates in source order, then backward ones in target
   order, on equal scores; LASER's unstable ``np.argsort`` leaves that order
   unspecified), and taken greedily: a candidate is kept only when neither its
   source nor its target was used by an earlier kept candidate. The result is
   one-to-one, and a pair found in both directions appears once;
4. only candidates scoring strictly above ``min_score`` (default 0, XTREME
   calls LASER with threshold 0) are returned.

XTREME then maps sentences back to ids and keeps, for an id pair seen twice,
the higher score; :func:`mine_candidates` does the same when ids repeat. Its
text-level de-duplication (identical sentences embedded once; a sentence text
that occurs under several ids is dropped from the output) is available as
:func:`unify_sentences`: embed the unique sentences it returns and pass its ids
(``None`` for ambiguous ones) to :func:`mine_candidates`.

Threshold: :func:`best_threshold` picks the score cut that maximises F1 against
the gold pairs of the dev split (XTREME's ``bucc_optimize``), and
:func:`apply_threshold` keeps the candidates scoring ``>=`` it (``bucc_extract``),
on the test split.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from xstilts.retrieval.search import (
    DEFAULT_BLOCK_SIZE,
    Array,
    Backend,
    RetrievalInputError,
    l2_normalize,
    nearest_neighbors,
)

Margin = Literal["ratio", "distance", "absolute"]
Retrieval = Literal["max", "fwd", "bwd", "intersect"]
Candidate = tuple[float, Hashable, Hashable]

__all__ = [
    "Candidate",
    "MarginCandidates",
    "apply_threshold",
    "best_threshold",
    "margin_candidates",
    "mine_candidates",
    "unify_sentences",
]


@dataclass(frozen=True)
class MarginCandidates:
    """Margin-scored k-NN candidates in both directions (positions, not ids).

    ``fwd_indices[i]`` are the target positions nearest to source ``i`` (best
    cosine first) and ``fwd_scores[i]`` their margin scores; ``bwd_*`` the same
    from every target to the sources. ``src_knn_mean[i]`` is the mean cosine of
    source ``i`` to its k nearest targets, ``tgt_knn_mean[j]`` that of target
    ``j`` to its k nearest sources.
    """

    fwd_indices: np.ndarray
    fwd_scores: np.ndarray
    bwd_indices: np.ndarray
    bwd_scores: np.ndarray
    src_knn_mean: np.ndarray
    tgt_knn_mean: np.ndarray

    def fwd_best(self) -> tuple[np.ndarray, np.ndarray]:
        """Per source: (best target position, its score); first on equal scores."""
        return _best_per_row(self.fwd_indices, self.fwd_scores)

    def bwd_best(self) -> tuple[np.ndarray, np.ndarray]:
        """Per target: (best source position, its score); first on equal scores."""
        return _best_per_row(self.bwd_indices, self.bwd_scores)


def _best_per_row(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(indices.shape[0])
    column = scores.argmax(axis=1)  # first maximum, like LASER's argmax
    return indices[rows, column], scores[rows, column]


def _apply_margin(cos: np.ndarray, denominator: np.ndarray, margin: str) -> np.ndarray:
    if margin == "ratio":
        return cos / denominator
    if margin == "distance":
        return cos - denominator
    if margin == "absolute":
        return cos.copy()
    raise RetrievalInputError(
        f"unknown margin {margin!r}; expected 'ratio', 'distance' or 'absolute'"
    )


def _as_2d_float(x: Array, name: str) -> Array:
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise RetrievalInputError(f"{name} must be 2-D [sentences, dim], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise RetrievalInputError(f"{name} is empty: there is nothing to mine")
    return x


def margin_candidates(
    src_emb: Array,
    tgt_emb: Array,
    k: int = 4,
    *,
    margin: Margin = "ratio",
    backend: Backend = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> MarginCandidates:
    """k-NN in both directions and the margin score of every (query, neighbour) pair.

    Embeddings are L2-normalised first. Cosines come from the k-NN search
    (float32); means and margin scores are computed in float64.
    """
    if margin not in ("ratio", "distance", "absolute"):
        raise RetrievalInputError(
            f"unknown margin {margin!r}; expected 'ratio', 'distance' or 'absolute'"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RetrievalInputError(f"k must be a positive integer, got {k!r}")
    x = l2_normalize(_as_2d_float(src_emb, "src_emb"))
    y = l2_normalize(_as_2d_float(tgt_emb, "tgt_emb"))
    n_src, n_tgt = x.shape[0], y.shape[0]
    fwd_cos, fwd_idx = nearest_neighbors(
        x, y, min(k, n_tgt), backend=backend, block_size=block_size
    )
    bwd_cos, bwd_idx = nearest_neighbors(
        y, x, min(k, n_src), backend=backend, block_size=block_size
    )
    fwd_cos = fwd_cos.astype(np.float64)
    bwd_cos = bwd_cos.astype(np.float64)
    src_mean = fwd_cos.mean(axis=1)
    tgt_mean = bwd_cos.mean(axis=1)
    fwd_scores = _apply_margin(fwd_cos, (src_mean[:, None] + tgt_mean[fwd_idx]) / 2, margin)
    bwd_scores = _apply_margin(bwd_cos, (tgt_mean[:, None] + src_mean[bwd_idx]) / 2, margin)
    return MarginCandidates(
        fwd_indices=fwd_idx,
        fwd_scores=fwd_scores,
        bwd_indices=bwd_idx,
        bwd_scores=bwd_scores,
        src_knn_mean=src_mean,
        tgt_knn_mean=tgt_mean,
    )


def _check_ids(ids: Sequence[Hashable] | None, count: int, name: str) -> Sequence[Hashable]:
    if ids is None:
        return range(count)
    if len(ids) != count:
        raise RetrievalInputError(f"{name} has {len(ids)} ids but there are {count} embeddings")
    return ids


def mine_candidates(
    src_emb: Array,
    tgt_emb: Array,
    src_ids: Sequence[Hashable] | None,
    tgt_ids: Sequence[Hashable] | None,
    k: int = 4,
    *,
    backend: Backend = "auto",
    margin: Margin = "ratio",
    retrieval: Retrieval = "max",
    min_score: float | None = 0.0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> list[Candidate]:
    """Mine candidate translation pairs, as LASER's ``mine_bitexts.py --mode mine``.

    Args:
        src_emb, tgt_emb: ``[n_src, d]`` and ``[n_tgt, d]`` sentence embeddings.
        src_ids, tgt_ids: one id per row (``None`` for the whole argument means
            row positions). An individual id of ``None`` marks a sentence that
            takes part in mining but is never reported (see
            :func:`unify_sentences`).
        k: neighbourhood size of the margin (clipped to the other side's size).
        backend, block_size: passed to :func:`nearest_neighbors`.
        margin: ``"ratio"`` (default), ``"distance"`` or ``"absolute"``.
        retrieval: ``"max"`` (default; see the module docstring), ``"fwd"``
            (best target of every source), ``"bwd"`` (best source of every
            target) or ``"intersect"`` (forward candidates that are also the
            backward best of their target). Only ``"max"`` is one-to-one.
        min_score: keep candidates scoring strictly above it (``None``: keep all).

    Returns:
        ``[(score, src_id, tgt_id), ...]`` sorted by score, highest first (ties
        keep the candidate order described in the module docstring), one entry
        per id pair (the highest score when a pair of ids occurs twice).
    """
    if retrieval not in ("max", "fwd", "bwd", "intersect"):
        raise RetrievalInputError(
            f"unknown retrieval mode {retrieval!r}; expected 'max', 'fwd', 'bwd' or 'intersect'"
        )
    cands = margin_candidates(
        src_emb, tgt_emb, k, margin=margin, backend=backend, block_size=block_size
    )
    n_src, n_tgt = cands.fwd_indices.shape[0], cands.bwd_indices.shape[0]
    src_ids = _check_ids(src_ids, n_src, "src_ids")
    tgt_ids = _check_ids(tgt_ids, n_tgt, "tgt_ids")
    fwd_best, fwd_score = cands.fwd_best()
    bwd_best, bwd_score = cands.bwd_best()

    src_rows = np.arange(n_src)
    tgt_rows = np.arange(n_tgt)
    if retrieval == "max":
        pair_src = np.concatenate([src_rows, bwd_best])
        pair_tgt = np.concatenate([fwd_best, tgt_rows])
        scores = np.concatenate([fwd_score, bwd_score])
        order = np.argsort(-scores, kind="stable")
        used_src: set[int] = set()
        used_tgt: set[int] = set()
        kept: list[int] = []
        for c in order.tolist():
            s, t = int(pair_src[c]), int(pair_tgt[c])
            if s in used_src or t in used_tgt:
                continue
            used_src.add(s)
            used_tgt.add(t)
            kept.append(c)
        selected = np.asarray(kept, dtype=np.int64)
    else:
        if retrieval == "fwd":
            pair_src, pair_tgt, scores = src_rows, fwd_best, fwd_score
            selected = src_rows
        elif retrieval == "bwd":
            pair_src, pair_tgt, scores = bwd_best, tgt_rows, bwd_score
            selected = tgt_rows
        else:  # intersect: source i -> j and target j -> i
            pair_src, pair_tgt, scores = src_rows, fwd_best, fwd_score
            selected = src_rows[bwd_best[fwd_best] == src_rows]
        selected = selected[np.argsort(-scores[selected], kind="stable")]

    best: dict[tuple[Hashable, Hashable], float] = {}
    for c in selected.tolist():
        score = float(scores[c])
        if min_score is not None and not score > min_score:
            continue
        sid, tid = src_ids[int(pair_src[c])], tgt_ids[int(pair_tgt[c])]
        if sid is None or tid is None:
            continue
        # Visited in decreasing score order, so the first score of a pair is its max.
        best.setdefault((sid, tid), score)
    return [(score, sid, tid) for (sid, tid), score in best.items()]


def unify_sentences(
    texts: Sequence[str], ids: Sequence[Hashable]
) -> tuple[list[int], list[Hashable | None]]:
    """XTREME's sentence de-duplication for BUCC, as row positions and ids.

    Identical texts are embedded and mined once (LASER's ``TextLoadUnify`` with
    ``unify``; the embedding kept is the one of the *last* occurrence, as in
    ``unique_embeddings``). A text that occurs more than once cannot be mapped
    back to a single id and XTREME's ``read_sent2id`` drops it, so its id here is
    ``None``: it still competes during mining but is never reported. Texts are
    compared exactly as given (XTREME strips lines first: strip before calling).

    Returns:
        ``(positions, unified_ids)``: for each distinct text in order of first
        appearance, the row to take its embedding from and its id (or ``None``).
    """
    if len(texts) != len(ids):
        raise RetrievalInputError(f"{len(texts)} texts but {len(ids)} ids")
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    for row, text in enumerate(texts):
        last[text] = row
        count[text] = count.get(text, 0) + 1
    positions = list(last.values())  # dicts keep first-insertion order
    unified = [ids[last[text]] if count[text] == 1 else None for text in last]
    return positions, unified


def _gold_set(gold_pairs: Iterable[tuple[Hashable, Hashable] | str]) -> set[tuple]:
    gold: set[tuple] = set()
    for pair in gold_pairs:
        if isinstance(pair, str):
            parts = pair.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise RetrievalInputError(f"gold line {pair!r} is not 'src_id<TAB>tgt_id'")
            gold.add((parts[0], parts[1]))
        else:
            src, tgt = pair
            gold.add((src, tgt))
    return gold


def _dedupe(candidates: Iterable[Candidate]) -> list[tuple[float, tuple[Hashable, Hashable]]]:
    """Highest score per (src, tgt) id pair, sorted by score descending (stable)."""
    best: dict[tuple[Hashable, Hashable], float] = {}
    for score, src, tgt in candidates:
        score = float(score)
        if np.isnan(score):
            raise RetrievalInputError(f"candidate ({src!r}, {tgt!r}) has a NaN score")
        key = (src, tgt)
        if key not in best or score > best[key]:
            best[key] = score
    return sorted(((s, key) for key, s in best.items()), key=lambda item: -item[0])


def best_threshold(
    candidates: Iterable[Candidate], gold_pairs: Iterable[tuple[Hashable, Hashable] | str]
) -> tuple[float, float]:
    """The score threshold that maximises F1 of the candidates against gold (dev split).

    As XTREME's ``bucc_optimize``: candidates (highest score per id pair) are
    sorted by decreasing score, the cut is moved down one score at a time,
    and precision = correct / extracted, recall = correct / len(gold), with
    every gold pair counting (found or not). The first cut reaching the
    highest F1 wins (strictly better F1 is needed to move further down, so on
    equal F1 the higher threshold is kept). The threshold returned is the
    midpoint between the score of the last candidate kept and the next lower
    score, and :func:`apply_threshold` keeps scores ``>=`` it.

    Tie rule: a cut can only fall between two *different* scores, because
    ``score >= threshold`` keeps or drops equal scores together; F1 is evaluated
    after each group of equal scores. XTREME evaluates it after every single
    candidate, which is the same when scores are distinct (the normal case)
    but can pick a cut inside a group of equal scores that its own ``>=``
    extraction cannot realise. When the best cut keeps every candidate, the
    threshold is the lowest score itself (XTREME would index past the end).
    When no candidate is correct, F1 is 0 at every cut and, as in XTREME, the
    threshold is 0.0.

    Returns:
        ``(threshold, f1)`` with ``f1`` in percent, equal to the F1 of
        ``apply_threshold(candidates, threshold)`` against ``gold_pairs``.
    """
    gold = _gold_set(gold_pairs)
    if not gold:
        raise RetrievalInputError("no gold pairs: cannot choose a threshold that maximises F1")
    items = _dedupe(candidates)
    threshold = 0.0
    best_f1 = 0.0
    extracted = correct = 0
    for position, (score, pair) in enumerate(items):
        extracted += 1
        correct += pair in gold
        next_score = items[position + 1][0] if position + 1 < len(items) else None
        if next_score == score:
            continue  # inside a group of equal scores: no cut possible here
        if correct == 0:
            continue
        precision = correct / extracted
        recall = correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_f1 = f1
            threshold = score if next_score is None else _midpoint(score, next_score)
    return threshold, 100.0 * best_f1


def _midpoint(higher: float, lower: float) -> float:
    """A threshold separating two scores: their midpoint, unless rounding lands on ``lower``."""
    middle = (higher + lower) / 2
    return middle if middle > lower else higher


def apply_threshold(
    candidates: Iterable[Candidate], threshold: float
) -> set[tuple[Hashable, Hashable]]:
    """The (src_id, tgt_id) pairs of the candidates scoring ``>= threshold``."""
    return {(src, tgt) for score, src, tgt in candidates if float(score) >= threshold}
