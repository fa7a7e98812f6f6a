"""How the report compares two options: the run is the unit of evidence.

Unit. One number per trained run: its score averaged over the languages the
benchmark evaluates (or one language, for a per-language cell, or the
non-English languages, for a zero-shot comparison). Every language of a run
comes from the same trained model and shares its run-to-run noise, so
(seed, language) cells are never treated as independent samples.

Pairing. Runs of two options are paired only when they truly share a
seed-level encoder: each run of one option starts from the same intermediate
checkpoint as exactly one run of the other (a target-only variant of an
intermediate option). Otherwise, including every comparison with the baseline
(which starts from the pretrained encoder), the comparison is unpaired: option
seed s and baseline seed s have nothing in common but a number.

Tests, for options A (tested) and B (reference) with runs a_1..a_n, b_1..b_m:

- Difference of means ``mean(a) - mean(b)``.
- 95% interval: percentile bootstrap over runs, A and B resampled separately
  (paired: the differences resampled). With few runs (under about 10 per
  option) a percentile interval is too narrow; the decision is the
  permutation test's, never the interval's.
- p-value: an exact two-sided permutation test of the difference of means
  over run labels (as ``scipy.stats.permutation_test`` computes it): all C(n+m, n)
  relabelings when there are at most ``EXACT_LIMIT`` of them (paired: all 2^n
  sign flips), else ``EXACT_LIMIT`` random ones. Its smallest attainable p is
  ``2 / C(n+m, n)`` (0.1 for 3 vs 3 runs, so such a grid can show nothing at
  alpha 0.05; 0.008 for 5 vs 5).
- Almost Stochastic Order (Dror et al. 2019, as Ulmer et al. 2022's
  ``deep-significance`` computes it): the violation ratio of the Wasserstein-2
  distance between the two empirical quantile functions, its bootstrap
  standard deviation, and ``epsilon_min``, the upper bound of a 95% one-sided
  interval of the violation ratio. The better-looking option (higher mean) is
  said to almost stochastically dominate the other when ``epsilon_min < 0.2``
  (Ulmer et al.'s threshold; 0.5 gives too many false positives), and only
  with at least ``ASO_MIN_RUNS`` runs a side: below that the rule fires far
  more often than 5% on null grids, so epsilon_min is shown, not decided.
- Against an option chosen on validation (a study's ``choose: best``): the
  same permutation test, except that every relabeling shuffles the runs over
  the option and all candidates and chooses again, so the winner's curse of
  the choice is part of the null distribution.
- Multiple comparisons: within each table, Holm's step-down correction
  (family-wise error, the default) or Benjamini-Hochberg (false discovery
  rate); a table's caption names the correction and the stars use corrected
  p-values.
- What the seeds can show: the smallest difference a grid could detect with
  power 0.8 at the (corrected) alpha, from the pooled SD over seeds, and
  whether the permutation test can reach alpha at all with these run counts.

Not here: a hierarchical bootstrap over runs and then test examples (Koehn
2004; Berg-Kirkpatrick et al. 2012) needs per-example scores, which results
records do not keep.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 10_000
EXACT_LIMIT = 20_000
"""Relabelings up to which the permutation test enumerates all of them."""
ASO_THRESHOLD = 0.2
ASO_MIN_RUNS = 15
"""Runs per option below which ASO decides nothing: in null simulations (see
benchmarks/significance_calibration.py) epsilon_min < 0.2 fires in about 18% of
3 vs 3 and 11% of 5 vs 5 comparisons; epsilon_min is still printed."""
ASO_RESAMPLES = 1_000
ASO_CONFIDENCE = 0.95
SEED = 0

Correction = Literal["holm", "bh", "none"]
CORRECTION_WORDS = {
    "holm": "Holm-corrected",
    "bh": "Benjamini-Hochberg-corrected",
    "none": "uncorrected",
}


@dataclass(frozen=True)
class RunComparison:
    """Option A against option B, one number per run."""

    n_a: int
    n_b: int
    diff: float
    ci: tuple[float, float] | None
    p: float | None
    """Two-sided permutation p-value, uncorrected; None where no test is possible."""
    min_p: float | None
    """The smallest p-value the permutation test can give with these runs."""
    eps_min: float | None
    """ASO epsilon_min of the better-looking option over the other."""
    paired: bool = False
    p_adjusted: float | None = None
    """``p`` after the table's multiple-comparison correction."""

    @property
    def significant(self) -> bool:
        p = self.p_adjusted if self.p_adjusted is not None else self.p
        return p is not None and p < ALPHA

    @property
    def dominates(self) -> bool:
        """ASO: the better-looking option almost stochastically dominates (decided only
        with ``ASO_MIN_RUNS`` runs a side)."""
        enough = min(self.n_a, self.n_b) >= ASO_MIN_RUNS
        return enough and self.eps_min is not None and self.eps_min < ASO_THRESHOLD


def stars(test: RunComparison | None) -> str:
    """'*' for a difference significant after the table's correction."""
    return "*" if test is not None and test.significant else ""


def compare_runs(
    a: Sequence[float],
    b: Sequence[float],
    *,
    paired: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> RunComparison | None:
    """A against B; None when either has no run. ``paired``: ``a[i]`` and ``b[i]``
    share a seed-level encoder (equal lengths)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        return None
    if paired and x.size != y.size:
        raise ValueError("paired comparisons need as many runs on both sides")
    diff = float(x.mean() - y.mean())
    rng = np.random.default_rng(seed)
    ci = _bootstrap_interval(x, y, paired, resamples, rng)
    p, min_p = permutation_p(x, y, paired=paired, seed=seed)
    eps = aso_epsilon(x, y, seed=seed) if diff >= 0 else aso_epsilon(y, x, seed=seed)
    return RunComparison(x.size, y.size, diff, ci, p, min_p, eps, paired)


def _bootstrap_interval(
    x: np.ndarray, y: np.ndarray, paired: bool, resamples: int, rng: np.random.Generator
) -> tuple[float, float] | None:
    if paired:
        d = x - y
        if d.size < 2:
            return None
        means = d[rng.integers(0, d.size, (resamples, d.size))].mean(axis=1)
    else:
        if x.size < 2 or y.size < 2:
            return None
        xs = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
        ys = y[rng.integers(0, y.size, (resamples, y.size))].mean(axis=1)
        means = xs - ys
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def permutation_p(
    x: np.ndarray, y: np.ndarray, *, paired: bool = False, seed: int = SEED
) -> tuple[float | None, float | None]:
    """Two-sided p-value of the difference of means and the smallest p-value the
    design can give; (None, None) with fewer than two runs a side. Exact over all
    relabelings (sign flips when paired) up to ``EXACT_LIMIT`` of them, else that many
    random ones, counting the observed labeling (as ``scipy.stats.permutation_test``,
    which the tests check this against)."""
    if x.size < 2 or y.size < 2:
        return None, None
    if paired:
        d = x - y
        labelings = 2**d.size
        signs = _sign_flips(d.size, seed)
        null = (signs * d).mean(axis=1)
        observed = d.mean()
    else:
        pooled = np.concatenate([x, y])
        labelings = math.comb(pooled.size, x.size)
        chosen = _splits(x.size, y.size, seed)
        first = pooled[chosen].sum(axis=1)
        null = first / x.size - (pooled.sum() - first) / y.size
        observed = x.mean() - y.mean()
    exact = labelings <= EXACT_LIMIT
    # scipy's tolerance for ties between the observed and relabeled statistics, and its
    # two-sided p: twice the smaller tail (the null is not symmetric for unequal sizes)
    tolerance = max(1e-14, abs(observed) * 1e-14) * 1e2
    tails = np.array([np.sum(null >= observed - tolerance), np.sum(null <= observed + tolerance)])
    p = 2 * (tails.min() / null.size if exact else (tails.min() + 1) / (null.size + 1))
    smallest = 2 / labelings if exact else 2 / (EXACT_LIMIT + 1)
    return float(min(1.0, p)), min(1.0, smallest)


def selection_permutation_p(
    option: Sequence[tuple[float, float]],
    candidates: Sequence[Sequence[tuple[float, float]]],
    *,
    resamples: int = EXACT_LIMIT,
    seed: int = SEED,
) -> tuple[float | None, float | None]:
    """Two-sided p-value of "option minus the candidate with the best mean validation
    score", the choice made again in every relabeling: runs, each a (validation, test)
    pair, are shuffled over the option and all candidates. A lucky run is lucky on
    validation and test alike, so testing against the chosen candidate as if it had
    been named beforehand would favour it (the winner's curse); re-choosing in every
    relabeling puts that selection into the null distribution."""
    groups = [np.asarray(option, dtype=float)] + [np.asarray(c, dtype=float) for c in candidates]
    if any(g.ndim != 2 or g.shape[0] < 2 for g in groups):
        return None, None
    pooled = np.concatenate(groups)
    bounds = np.cumsum([0] + [g.shape[0] for g in groups])

    def statistic(order: np.ndarray) -> np.ndarray:
        shuffled = pooled[order]  # [resamples, runs, 2]
        means = np.stack(
            [shuffled[:, lo:hi].mean(axis=1) for lo, hi in itertools.pairwise(bounds)], 1
        )  # [resamples, groups, 2]
        chosen = 1 + np.argmax(means[:, 1:, 0], axis=1)
        return means[:, 0, 1] - means[np.arange(len(order)), chosen, 1]

    observed = statistic(np.arange(pooled.shape[0])[None, :])[0]
    rng = np.random.default_rng(seed)
    null = statistic(np.argsort(rng.random((resamples, pooled.shape[0])), axis=1))
    tolerance = max(1e-14, abs(observed) * 1e-14) * 1e2
    tails = min(np.sum(null >= observed - tolerance), np.sum(null <= observed + tolerance))
    return float(min(1.0, 2 * (tails + 1) / (resamples + 1))), 2 / (resamples + 1)


@cache
def _all_splits(n: int, m: int) -> np.ndarray:
    """Every choice of ``n`` of ``n + m`` positions, as an index matrix."""
    return np.array(list(itertools.combinations(range(n + m), n)), dtype=np.int64)


def _splits(n: int, m: int, seed: int) -> np.ndarray:
    if math.comb(n + m, n) <= EXACT_LIMIT:
        return _all_splits(n, m)
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((EXACT_LIMIT, n + m)), axis=1)[:, :n]


def _sign_flips(n: int, seed: int) -> np.ndarray:
    if 2**n <= EXACT_LIMIT:
        codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :] & 1
        return 1 - 2 * codes.astype(float)
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(EXACT_LIMIT, n))


def _segments(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where both empirical quantile functions (of n and m scores) are constant: the
    index into each sorted sample on every such piece of (0, 1), and its length."""
    edges = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    middle = (edges[:-1] + edges[1:]) / 2
    to_index = lambda k: np.clip(np.ceil(k * middle).astype(int) - 1, 0, k - 1)  # noqa: E731
    return to_index(n), to_index(m), np.diff(edges)


def _violation_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """epsilon_W2(F_a, F_b) of each row: the share of the squared Wasserstein-2 distance
    between the quantile functions that lies where A is below B (A fails to dominate).
    The integrals are exact over the pieces where both quantile functions are
    constant (deep-significance sums over a grid of step dt instead)."""
    index_a, index_b, widths = _segments(a.shape[-1], b.shape[-1])
    qa = np.sort(a, axis=-1)[..., index_a]
    qb = np.sort(b, axis=-1)[..., index_b]
    gap = qb - qa
    total = np.sum(gap**2 * widths, axis=-1)
    violated = np.sum(np.where(qa < qb, gap, 0.0) ** 2 * widths, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = violated / total
    return np.where(total > 0, ratio, 0.5)  # identical distributions: no order either way


def aso_epsilon(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    resamples: int = ASO_RESAMPLES,
    confidence: float = ASO_CONFIDENCE,
    seed: int = SEED,
) -> float | None:
    """epsilon_min of "A almost stochastically dominates B" (Dror et al. 2019): the
    violation ratio plus z_confidence times its bootstrap SD, clipped to [0, 1]."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        return None
    observed = float(_violation_ratio(x, y))
    rng = np.random.default_rng(seed)
    xs = x[rng.integers(0, x.size, (resamples, x.size))]
    ys = y[rng.integers(0, y.size, (resamples, y.size))]
    spread = float(np.std(_violation_ratio(xs, ys)))
    return float(np.clip(observed + stats.norm.ppf(confidence) * spread, 0.0, 1.0))


def adjust(p_values: Sequence[float | None], method: Correction = "holm") -> list[float | None]:
    """Holm's step-down or Benjamini-Hochberg adjusted p-values (None stays None and
    does not count as a comparison)."""
    known = [(i, p) for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not known or method == "none":
        return list(p_values)
    values = np.array([p for _, p in known])
    if method == "bh":
        adjusted = stats.false_discovery_control(values, method="bh")
    else:
        order = np.argsort(values, kind="stable")
        m = values.size
        stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    for (i, _), p in zip(known, adjusted, strict=True):
        out[i] = float(p)
    return out


def corrected(
    comparisons: Sequence[RunComparison | None], method: Correction = "holm"
) -> list[RunComparison | None]:
    """The comparisons of one table with their corrected p-values filled in."""
    adjusted = adjust([c.p if c is not None else None for c in comparisons], method)
    return [
        None if c is None else replace(c, p_adjusted=p)
        for c, p in zip(comparisons, adjusted, strict=True)
    ]


def minimum_detectable_difference(
    sd: float, n_a: int, n_b: int, *, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """The smallest true difference a two-sided two-sample t-test detects with
    ``power`` at ``alpha``, given the SD over seeds (None below 2 runs a side)."""
    if n_a < 2 or n_b < 2 or not math.isfinite(sd):
        return None
    df = n_a + n_b - 2
    factor = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return float(factor * sd * math.sqrt(1 / n_a + 1 / n_b))


def pooled_sd(groups: Sequence[Sequence[float]]) -> float | None:
    """The SD over seeds pooled over groups (options) with at least two runs."""
    usable = [np.asarray(g, dtype=float) for g in groups if len(g) > 1]
    if not usable:
        return None
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in usable)
    df = sum(g.size - 1 for g in usable)
    return math.sqrt(ss / df)


def per_test_alpha(tests: int, method: Correction) -> float:
    """The p-value the smallest of ``tests`` p-values needs to be significant
    (Holm: alpha / tests; BH and none: alpha, reached when all are that small)."""
    return ALPHA / tests if method == "holm" and tests > 0 else ALPHA


def power_words(
    comparisons: Sequence[RunComparison | None],
    sd: float | None,
    method: Correction,
    fmt_num,
) -> str:
    """What the runs of a table can show: whether the permutation test can reach
    significance at all after the correction, and the smallest detectable difference."""
    tested = [c for c in comparisons if c is not None and c.min_p is not None]
    if not tested:
        return (
            "Nothing can be tested: a permutation test needs at least two runs of each "
            "option, so every difference below is descriptive; add seeds."
        )
    needed = per_test_alpha(len(tested), method)
    reachable = [c for c in tested if c.min_p is not None and c.min_p < needed]
    counts = sorted({(c.n_a, c.n_b) for c in tested})
    design = ", ".join(f"{a} vs {b}" for a, b in counts)
    if not reachable:
        smallest = min(c.min_p for c in tested if c.min_p is not None)
        return (
            f"Too few runs to test anything: with {design} runs the smallest two-sided "
            f"permutation p is {smallest:.3g}, above the {needed:.3g} that {len(tested)} "
            f"{CORRECTION_WORDS[method]} comparisons need; add seeds."
        )
    sizes = [(c.n_a, c.n_b) for c in reachable]
    n_a, n_b = min(sizes)
    mde = minimum_detectable_difference(sd, n_a, n_b, alpha=needed) if sd is not None else None
    if mde is None:
        return f"Runs per comparison: {design}."
    return (
        f"With {n_a} vs {n_b} runs and the pooled SD over seeds of {fmt_num(sd)}, the "
        f"smallest difference detectable with power {POWER} at alpha {needed:.3g} is "
        f"about {fmt_num(mde)}."
    )
