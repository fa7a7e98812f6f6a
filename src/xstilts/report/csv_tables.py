"""The report's tables as tidy, full-precision CSV files."""

from __future__ import annotations

import csv
from pathlib import Path

from xstilts.report.statistics import RunComparison
from xstilts.report.tables import AdversarialRow, FamilyRow, MainRow, QuestionRow, XtremeScore

TEST_COLUMNS = [
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_corrected",
    "eps_min",
    "n_option",
    "n_reference",
    "paired",
]


def _test(test: RunComparison | None, diff: float | None = None) -> list:
    if test is None:
        return [diff, None, None, None, None, None, None, None, None]
    low, high = test.ci if test.ci is not None else (None, None)
    return [
        test.diff,
        low,
        high,
        test.p,
        test.p_adjusted,
        test.eps_min,
        test.n_a,
        test.n_b,
        test.paired,
    ]


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_main_csv(rows: list[MainRow], targets: list[str], path: Path) -> Path:
    out = []
    for row in rows:
        o = row.option
        for target in targets:
            c = row.cells[target]
            if c is not None:
                out.append(
                    [
                        o.label,
                        o.name,
                        o.examples,
                        o.family,
                        target,
                        c.n,
                        c.mean,
                        c.std,
                        *_test(c.test, c.diff),
                    ]
                )
        if row.average is not None:
            n = row.average_test.n_a if row.average_test is not None else None
            out.append(
                [
                    o.label,
                    o.name,
                    o.examples,
                    o.family,
                    "average",
                    n,
                    row.average,
                    None,
                    *_test(row.average_test, row.average_diff),
                ]
            )
    header = [
        "option",
        "intermediate_option",
        "intermediate_examples",
        "family",
        "target",
        "n_runs",
        "mean",
        "std",
        *TEST_COLUMNS,
    ]
    return _write(path, header, out)


def write_family_csv(families: list[FamilyRow], targets: list[str], path: Path) -> Path:
    out = [
        [
            f.family,
            len(f.options),
            t,
            f.means[t],
            f.spreads.get(t),
            *_test(f.tests.get(t), f.diffs[t]),
        ]
        for f in families
        for t in targets
    ]
    out += [
        [f.family, len(f.options), "average", f.average, None, *_test(None, f.average_diff)]
        for f in families
    ]
    header = ["family", "n_options", "target", "mean", "sd_over_options", *TEST_COLUMNS]
    return _write(path, header, out)


def write_xtreme_csv(score: XtremeScore, targets: list[str], path: Path) -> Path:
    out = [
        [t, score.best_option[t], score.rule.get(t), score.best[t], score.baseline[t]]
        for t in targets
    ]
    out.append(["average", None, None, score.best_score, score.baseline_score])
    return _write(path, ["target", "best_option", "chosen_by", "best", "baseline"], out)


def write_question_csv(rows: list[QuestionRow], path: Path) -> Path:
    out = [[r.target, r.option, r.reference, r.how, *_test(r.test)] for r in rows]
    return _write(path, ["target", "option", "against", "chosen", *TEST_COLUMNS], out)


def write_adversarial_csv(rows: list[AdversarialRow], path: Path) -> Path:
    """One line per (adversarial option, target, language), and the non-English mean."""
    out = []
    for row in rows:
        for language, diff in row.diffs.items():
            out.append(
                [row.option.label, row.counterpart.label, row.target, language, *_test(None, diff)]
            )
        out.append(
            [
                row.option.label,
                row.counterpart.label,
                row.target,
                "non-English",
                *_test(row.test, row.zero_shot_diff),
            ]
        )
    header = ["option", "standard", "target", "language", *TEST_COLUMNS]
    return _write(path, header, out)
