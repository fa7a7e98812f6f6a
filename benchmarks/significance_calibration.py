"""False-positive rates and power of every test the report prints, on simulated grids.

Null designs (no option differs): a run's score in a language is language effect +
run effect (shared by all its languages) + cell noise. Beside the report's run-level
tests it runs the usual alternative, the cell-level paired bootstrap over
(seed, language) pairs that xstilts used before, and prints how much more often that
one fires.

    python benchmarks/significance_calibration.py [--simulations 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xstilts.report.data import BASELINE
from xstilts.report.simulate import Design, Rates, planted_power, simulated_grid, tally
from xstilts.report.statistics import ALPHA, aso_epsilon

DESIGNS = [
    Design(seeds=3, languages=15),
    Design(seeds=5, languages=7),
    Design(seeds=1, languages=15),
    Design(seeds=3, languages=8, run_sd=2.5, cell_sd=1.6),
    Design(seeds=5, languages=8, run_sd=2.5, cell_sd=1.6),
]


def cell_bootstrap_p(base: np.ndarray, option: np.ndarray, rng: np.random.Generator) -> float:
    """The old test: (seed, language) pairs resampled as if independent."""
    diffs = (option - base).ravel()
    observed = diffs.mean()
    means = diffs[rng.integers(0, diffs.size, (2000, diffs.size))].mean(axis=1)
    return float((1 + np.sum(np.abs(means - observed) >= abs(observed))) / 2001)


def old_rate(design: Design, simulations: int, seed: int) -> float | None:
    if design.seeds * design.languages < 5:
        return None
    rng = np.random.default_rng(seed)
    hits = total = 0
    for _ in range(simulations):
        grid = simulated_grid(design, rng)
        for target in grid.targets:
            base = np.array(
                [
                    list(grid.lang[(BASELINE, target, s)].values())
                    for s in range(1, design.seeds + 1)
                ]
            )
            for label in ("nli_a", "qa"):
                option = np.array(
                    [
                        list(grid.lang[(label, target, s)].values())
                        for s in range(1, design.seeds + 1)
                    ]
                )
                hits += cell_bootstrap_p(base, option, rng) < ALPHA
                total += 1
    return hits / total


def aso_rates(runs: list[int], simulations: int) -> dict[int, float]:
    """ASO's rule (epsilon_min < 0.2) on null pairs of n runs, whatever ASO_MIN_RUNS."""
    rng = np.random.default_rng(7)
    out = {}
    for n in runs:
        hits = 0
        for i in range(simulations):
            a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
            eps = aso_epsilon(a, b, seed=i) if a.mean() >= b.mean() else aso_epsilon(b, a, seed=i)
            hits += eps < 0.2
        out[n] = hits / simulations
    return out


def _fmt(rate: float | None) -> str:
    return "   -  " if rate is None else f"{rate:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--simulations", type=int, default=300)
    args = parser.parse_args()
    for index, design in enumerate(DESIGNS):
        start = time.perf_counter()
        rates = Rates()
        rng = np.random.default_rng(index)
        for _ in range(args.simulations):
            tally(simulated_grid(design, rng), rates)
        old = old_rate(design, min(args.simulations, 200), seed=index)
        print(
            f"\n{design.name}, run SD {design.run_sd}, cell SD {design.cell_sd} "
            f"({args.simulations} grids, {time.perf_counter() - start:.0f} s)"
        )
        print(f"  {'test':34} {'n':>6} {'raw p<.05':>9} {'corrected':>9} {'ASO':>6}")
        for kind in sorted(rates.seen):
            print(
                f"  {kind:34} {rates.seen[kind]:6d} {_fmt(rates.rate(kind)):>9} "
                f"{_fmt(rates.rate(kind, 'corrected')):>9} {_fmt(rates.rate(kind, 'aso')):>6}"
            )
        main_rate = rates.rate("main cell")
        if old is not None:
            ratio = f"{old / main_rate:.1f}x" if main_rate else "inf"
            print(f"  old cell-level bootstrap, main cells: {old:.3f} ({ratio} the run-level rate)")
    print("\nASO's rule (eps_min < 0.2) on null pairs, by runs per option:")
    for n, rate in aso_rates([3, 5, 10, 15, 20], 400).items():
        print(f"  {n:3d} runs: {rate:.3f}")
    print("\nPower of the main table (planted difference in one option, 7 languages):")
    for seeds in (3, 5, 8, 10):
        for difference in (1.0, 2.0):
            power = planted_power(Design(seeds=seeds, languages=7), difference, 60, seed=seeds)
            print(
                f"  {seeds:2d} seeds, +{difference} points: raw {_fmt(power.rate('main cell'))}, "
                f"corrected {_fmt(power.rate('main cell', 'corrected'))}"
            )


if __name__ == "__main__":
    main()
