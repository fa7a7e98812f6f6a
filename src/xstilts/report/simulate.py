"""Simulated grids for checking the report's tests: how often each fires when no option
differs (false positives) or when one truly does (power).

A simulated run's score in a language is ``language effect + option effect + run
effect + cell noise``: the run effect (SD ``run_sd``) is shared by every language of
the run, as a trained model's luck is; the cell noise (SD ``cell_sd``) is not. This is
the structure that makes (seed, language) cells pseudo-replicates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from xstilts.report.data import BASELINE, GridScores, Option, RunInfo
from xstilts.report.robustness import STATISTICS, robustness_rows
from xstilts.report.statistics import ALPHA, RunComparison
from xstilts.report.tables import adversarial_rows, family_rows, main_rows, question_rows

TASK_OF = {"nli_a": "mnli", "nli_b": "anli_plus", "qa": "squad", "syntax": "ccg"}
FAMILY_OF = {"nli_a": "nli", "nli_b": "nli", "qa": "qa", "syntax": "syntax"}
ADVERSARIAL = "nli_a-freelb"
TARGETS = ("target_a", "target_b")


@dataclass(frozen=True)
class Design:
    seeds: int
    languages: int
    run_sd: float = 0.8
    cell_sd: float = 0.3

    @property
    def name(self) -> str:
        return f"{self.seeds} seeds x {self.languages} languages"


@dataclass
class Rates:
    """Per test kind: comparisons seen, raw p < alpha, significant after correction,
    and ASO dominance decisions."""

    seen: Counter = field(default_factory=Counter)
    raw: Counter = field(default_factory=Counter)
    corrected: Counter = field(default_factory=Counter)
    aso: Counter = field(default_factory=Counter)

    def add(self, kind: str, test: RunComparison | None) -> None:
        if test is None or test.p is None:
            self.seen[kind] += 0
            return
        self.seen[kind] += 1
        self.raw[kind] += test.p < ALPHA
        self.corrected[kind] += test.significant
        self.aso[kind] += test.dominates

    def rate(self, kind: str, counter: str = "raw") -> float | None:
        seen = self.seen[kind]
        return getattr(self, counter)[kind] / seen if seen else None


def simulated_grid(
    design: Design, rng: np.random.Generator, effects: dict[str, float] | None = None
) -> GridScores:
    """A grid of the baseline, four single-task options, one adversarial variant of
    ``nli_a`` (sharing its intermediate runs), two targets; ``effects``: true score
    differences per option label (default none: the null)."""
    effects = effects or {}
    languages = ["en", *(f"l{i}" for i in range(1, design.languages))]
    language_effect = dict(zip(languages, rng.normal(0, 5, len(languages)), strict=True))
    labels = [BASELINE, *TASK_OF, ADVERSARIAL]
    options = [
        Option(
            name=label,
            tasks=(TASK_OF.get(label.split("-")[0], ""),) if label != BASELINE else (),
            examples=None,
            family=FAMILY_OF.get(label.split("-")[0], BASELINE),
            adversarial="target:freelb" if label == ADVERSARIAL else "",
            baseline=label == BASELINE,
        )
        for label in labels
    ]
    lang: dict = {}
    runs: dict = {}
    validation: dict = {}
    for target in TARGETS:
        for label in labels:
            for seed in range(1, design.seeds + 1):
                run = rng.normal(0, design.run_sd)
                cells = rng.normal(0, design.cell_sd, len(languages))
                shift = effects.get(label, 0.0)
                lang[(label, target, seed)] = {
                    lg: 60 + language_effect[lg] + shift + run + c
                    for lg, c in zip(languages, cells, strict=True)
                }
                start = None if label == BASELINE else f"{label.split('-')[0]}-s{seed}"
                runs[(label, target, seed)] = RunInfo(f"{label}-{target}-{seed}", start)
                validation[(label, target, seed)] = 70 + shift + run + rng.normal(0, 0.5)
    return GridScores(
        name="simulated",
        options=options,
        targets=list(TARGETS),
        lang=lang,
        validation=validation,
        runs=runs,
    )


def tally(grid: GridScores, rates: Rates, *, only: set[str] | None = None) -> None:
    """Add every comparison the report would print for ``grid`` to ``rates``, by kind
    (restricted to the options in ``only`` when given, e.g. the truly null ones)."""
    from xstilts.experiment.report_spec import Comparison

    def wanted(label: str) -> bool:
        return only is None or label in only

    rows = main_rows(grid)
    for row in rows:
        if wanted(row.option.label):
            for cell in row.cells.values():
                rates.add("main cell", cell.test if cell else None)
            rates.add("main average", row.average_test)
    if only is None:
        for frow in family_rows(rows, grid.targets, grid):
            for test in frow.tests.values():
                rates.add("family", test)
    for rrow in robustness_rows(grid):
        if wanted(rrow.option.label):
            for name in STATISTICS:
                rates.add(f"robustness {name}", rrow.tests.get(name))
    for arow in adversarial_rows(grid):
        if wanted(arow.option.label):
            rates.add("adversarial (paired)", arow.test)
    singles = list(TASK_OF)
    comparisons = [
        Comparison(option=label, against=[o for o in singles if o != label], choose="best")
        for label in singles
    ]
    comparisons.append(Comparison(option="syntax", against=singles[:3], choose="each"))
    for qrow in question_rows(grid, comparisons):
        if wanted(qrow.option) and (qrow.reference is None or wanted(qrow.reference)):
            rates.add(f"question ({qrow.how})", qrow.test)


def null_rates(design: Design, simulations: int, seed: int = 0) -> Rates:
    rng = np.random.default_rng(seed)
    rates = Rates()
    for _ in range(simulations):
        tally(simulated_grid(design, rng), rates)
    return rates


def planted_power(design: Design, difference: float, simulations: int, seed: int = 0) -> Rates:
    """How often the main table finds ``difference`` points planted in one option."""
    rng = np.random.default_rng(seed)
    rates = Rates()
    for _ in range(simulations):
        grid = simulated_grid(design, rng, {"qa": difference})
        for row in main_rows(grid):
            if row.option.label == "qa":
                for cell in row.cells.values():
                    rates.add("main cell", cell.test if cell else None)
    return rates
