"""The report's statistics: exact tests checked against scipy and hand values, and
their calibration on simulated grids where no option differs (and power where one does)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from xstilts.report.simulate import Design, null_rates, planted_power
from xstilts.report.statistics import (
    adjust,
    aso_epsilon,
    compare_runs,
    minimum_detectable_difference,
    permutation_p,
    selection_permutation_p,
)

LIMIT = 0.07
"""The largest false-positive rate at alpha 0.05 a printed test may show."""


def _scipy_p(x: np.ndarray, y: np.ndarray, paired: bool) -> float:
    if paired:
        return stats.permutation_test(
            (x - y,),
            lambda d, axis=-1: d.mean(axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=np.inf,
        ).pvalue
    return stats.permutation_test(
        (x, y),
        lambda u, v, axis=-1: u.mean(axis=axis) - v.mean(axis=axis),
        vectorized=True,
        n_resamples=np.inf,
    ).pvalue


@pytest.mark.parametrize(
    ("n", "m", "paired"), [(3, 3, False), (5, 5, False), (4, 7, False), (5, 5, True)]
)
def test_permutation_p_is_scipys_exact_test(n: int, m: int, paired: bool):
    rng = np.random.default_rng(n * 10 + m)
    for _ in range(5):
        x, y = rng.normal(0, 1, n), rng.normal(0.7, 1, m)
        p, _ = permutation_p(x, y, paired=paired)
        assert p == pytest.approx(_scipy_p(x, y, paired))


def test_smallest_attainable_p_follows_the_run_counts():
    separated = compare_runs([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    assert separated.p == pytest.approx(0.1) and separated.min_p == pytest.approx(0.1)
    assert not separated.significant  # 3 vs 3 runs can never reach 0.05
    five = compare_runs([10.0, 11, 12, 13, 14], [1.0, 2, 3, 4, 5])
    assert five.p == pytest.approx(2 / math.comb(10, 5)) and five.significant
    assert compare_runs([1.0], [2.0]).p is None  # one run a side: nothing to test
    assert compare_runs([1.0, 2.0], []) is None


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, None, 0.03, 0.5]
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, made monotone
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    # BH: p * m / rank, made monotone from the top
    assert adjust(p, "bh") == pytest.approx([0.04, 0.0533333, None, 0.0533333, 0.5])
    assert adjust(p, "none") == p


def test_aso_epsilon_orders_clear_cases():
    rng = np.random.default_rng(0)
    better, worse = rng.normal(2, 1, 200), rng.normal(0, 1, 200)
    assert aso_epsilon(better, worse) < 0.05
    assert aso_epsilon(worse, better) > 0.95
    same = rng.normal(0, 1, 200)
    assert 0.2 < aso_epsilon(rng.normal(0, 1, 200), same) < 0.9


def test_minimum_detectable_difference_is_the_t_test_power_formula():
    mde = minimum_detectable_difference(2.0, 5, 5)
    factor = stats.t.ppf(0.975, 8) + stats.t.ppf(0.8, 8)
    assert mde == pytest.approx(factor * 2.0 * math.sqrt(2 / 5))
    assert minimum_detectable_difference(2.0, 1, 5) is None


def test_selection_is_part_of_the_null():
    # the chosen candidate (best validation) is lucky on test too: a test that ignores
    # the choice calls the option worse; re-choosing in every relabeling does not
    rng = np.random.default_rng(3)
    hits_naive = hits_selection = 0
    trials = 300
    for trial in range(trials):
        groups = []
        for _ in range(9):  # the option and 8 candidates, 6 runs each
            luck = rng.normal(0, 1, 6)
            groups.append(np.stack([luck + rng.normal(0, 0.2, 6), luck], axis=1))
        option, candidates = groups[0], groups[1:]
        best = max(candidates, key=lambda g: g[:, 0].mean())
        naive, _ = permutation_p(option[:, 1], best[:, 1])
        chosen, _ = selection_permutation_p(option, candidates, resamples=2000, seed=trial)
        hits_naive += naive < 0.05
        hits_selection += chosen < 0.05
    assert hits_naive / trials > 0.1  # the winner's curse, measured
    assert hits_selection / trials <= LIMIT


def _check(rates, design: Design) -> None:
    assert rates.seen, design
    for kind in rates.seen:
        for counter in ("raw", "corrected", "aso"):
            rate = rates.rate(kind, counter)
            assert rate is None or rate <= LIMIT, (design.name, kind, counter, rate)


@pytest.mark.parametrize(
    ("design", "simulations"),
    [
        (Design(seeds=5, languages=7), 100),
        (Design(seeds=3, languages=15), 20),
        (Design(seeds=1, languages=15), 10),
        (Design(seeds=5, languages=8, run_sd=2.5, cell_sd=1.6), 40),
    ],
    ids=lambda v: v.name if isinstance(v, Design) else str(v),
)
def test_every_printed_test_is_calibrated_on_null_grids(design: Design, simulations: int):
    """No option differs: every test the report prints (raw and corrected p-values,
    ASO decisions) fires in at most 7% of comparisons (alpha 0.05)."""
    rates = null_rates(design, simulations, seed=design.seeds)
    _check(rates, design)
    if design.seeds == 5 and design.run_sd < 1:
        # enough comparisons to tell a calibrated 5% from a broken test
        assert rates.seen["main cell"] >= 1000
        assert 0.02 <= rates.rate("main cell") <= LIMIT
    if design.seeds < 5:
        assert all(rates.rate(k) in (None, 0.0) for k in rates.seen if k.startswith("main"))


def test_power_on_a_planted_difference():
    rates = planted_power(Design(seeds=8, languages=7), difference=1.5, simulations=15)
    assert rates.rate("main cell") >= 0.8
    assert rates.rate("main cell", "corrected") >= 0.5
