"""How well an estimator's ranking of a target's options agrees with the scores the
options' target runs measured.

- Spearman's rank correlation of estimates and measured scores (unscored options tie
  below every scored one).
- NDCG@k over the predicted order, with gains the measured score above the target's
  worst option (so the worst option gains nothing, and a target whose options all
  score alike gives 1).
- regret@k: the best measured score of all options minus the best among the top k
  predicted, in points of the target's score (Poth et al. 2021 divide it by the best;
  points say more for scores of different metrics).
- Two baselines: the intermediate dataset's size (the size estimator), and a random
  ranking (the expectation over all orders, exact up to 8 options, else 5,000 drawn).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

RANDOM_DRAWS = 5000
EXACT_UP_TO = 8


def order(estimates: Sequence[float | None]) -> list[int]:
    """Option indices, best estimate first; unscored ones last, in their given order
    (the sort is stable, so ties keep the grid's order too)."""

    def key(index: int) -> tuple[int, float]:
        value = estimates[index]
        return (1, 0.0) if value is None else (0, -value)

    return sorted(range(len(estimates)), key=key)


def spearman(estimates: Sequence[float | None], measured: Sequence[float]) -> float | None:
    scored = [v for v in estimates if v is not None]
    if len(measured) < 2 or not scored:
        return None
    floor = min(scored) - 1.0
    values = [floor if v is None else v for v in estimates]
    if len(set(values)) == 1 or len(set(measured)) == 1:
        return None  # a constant ranking correlates with nothing
    return float(spearmanr(values, measured).statistic)


def ndcg(ranking: Sequence[int], measured: Sequence[float], k: int) -> float:
    worst = min(measured)
    gains = [measured[i] - worst for i in ranking[:k]]
    ideal = sorted((m - worst for m in measured), reverse=True)[:k]
    dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
    best = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return 1.0 if best == 0 else dcg / best


def regret(ranking: Sequence[int], measured: Sequence[float], k: int) -> float:
    return max(measured) - max(measured[i] for i in ranking[:k])


def scores(estimates: Sequence[float | None], measured: Sequence[float]) -> dict[str, float | None]:
    """Spearman, NDCG@3, regret@1 and regret@3 of one estimator on one target."""
    ranking = order(estimates)
    return {
        "spearman": spearman(estimates, measured),
        "ndcg@3": ndcg(ranking, measured, 3),
        "regret@1": regret(ranking, measured, 1),
        "regret@3": regret(ranking, measured, 3),
    }


def random_scores(measured: Sequence[float], seed: int = 0) -> dict[str, float | None]:
    """The expected scores of a random ranking."""
    n = len(measured)
    if n <= EXACT_UP_TO:
        orders: list[Sequence[int]] = list(itertools.permutations(range(n)))
    else:
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(n).tolist() for _ in range(RANDOM_DRAWS)]
    totals: dict[str, list[float]] = {"spearman": [], "ndcg@3": [], "regret@1": [], "regret@3": []}
    for ranking in orders:
        # estimates that produce this ranking: n for the first, down to 1
        estimates = [0.0] * n
        for place, index in enumerate(ranking):
            estimates[index] = float(n - place)
        for key, value in scores(estimates, measured).items():
            if value is not None:
                totals[key].append(value)
    return {key: float(np.mean(v)) if v else None for key, v in totals.items()}
