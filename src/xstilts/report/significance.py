"""Paired bootstrap test of an intermediate option against the baseline.

Method: the option and the baseline are paired on the same (seed, language); only
pairs present in both enter the test. With d_i = option_i - baseline_i and the
observed mean difference D = mean(d), the pairs are resampled with replacement
(10,000 resamples, a seeded ``numpy`` generator) and each resample's mean
difference D_b computed. Under the null hypothesis of no difference the bootstrap
distribution is shifted to zero, giving the two-sided p-value
``p = (1 + #{|D_b - D| >= |D|}) / (1 + resamples)``. Identical options give
p = 1; a difference is marked significant (``*``) when p < 0.05. With fewer than
5 pairs there is no test (p is None): resampling 2 or 3 pairs of the same sign can
only ever agree with itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

RESAMPLES = 10_000
SEED = 0
ALPHA = 0.05
MIN_PAIRS = 5


def paired_bootstrap(
    baseline: Mapping[Hashable, float],
    option: Mapping[Hashable, float],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float | None:
    """Two-sided p-value of the mean paired difference; None with fewer than
    ``MIN_PAIRS`` common pairs."""
    keys = sorted(set(baseline) & set(option), key=repr)
    if len(keys) < MIN_PAIRS:
        return None
    diffs = np.array([option[k] - baseline[k] for k in keys], dtype=float)
    observed = diffs.mean()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[idx].mean(axis=1)
    extreme = np.abs(means - observed) >= abs(observed) - 1e-12
    return float((1 + extreme.sum()) / (1 + resamples))


def stars(p: float | None) -> str:
    return "*" if p is not None and p < ALPHA else ""
