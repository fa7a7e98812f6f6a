"""The report's tables as tidy, full-precision CSV files."""

from __future__ import annotations

import csv
from pathlib import Path

from xstilts.report.tables import AdversarialRow, FamilyRow, MainRow, XtremeScore


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_main_csv(rows: list[MainRow], targets: list[str], path: Path) -> Path:
    out = []
    for row in rows:
        for target in targets:
            c = row.cells[target]
            if c is not None:
                o = row.option
                out.append(
                    [o.label, o.name, o.examples, o.family, target, c.n, c.mean, c.std, c.diff, c.p]
                )
    header = [
        "option",
        "intermediate_option",
        "intermediate_examples",
        "family",
        "target",
        "n_seeds",
        "mean",
        "std",
        "diff",
        "p_value",
    ]
    return _write(path, header, out)


def write_family_csv(families: list[FamilyRow], targets: list[str], path: Path) -> Path:
    out = [
        [f.family, len(f.options), t, f.means[t], f.spreads.get(t), f.diffs[t], f.p.get(t)]
        for f in families
        for t in targets
    ]
    out += [
        [f.family, len(f.options), "average", f.average, None, f.average_diff, None]
        for f in families
    ]
    header = ["family", "n_options", "target", "mean", "sd_over_options", "diff", "p_value"]
    return _write(path, header, out)


def write_xtreme_csv(score: XtremeScore, targets: list[str], path: Path) -> Path:
    out = [[t, score.best_option[t], score.best[t], score.baseline[t]] for t in targets]
    out.append(["average", None, score.best_score, score.baseline_score])
    return _write(path, ["target", "best_option", "best", "baseline"], out)


def write_adversarial_csv(rows: list[AdversarialRow], path: Path) -> Path:
    """One line per (adversarial option, target, language), and the non-English mean."""
    out = []
    for row in rows:
        for language, diff in row.diffs.items():
            out.append([row.option.label, row.counterpart.label, row.target, language, diff, None])
        out.append(
            [
                row.option.label,
                row.counterpart.label,
                row.target,
                "non-English",
                row.zero_shot_diff,
                row.p,
            ]
        )
    header = ["option", "standard", "target", "language", "diff", "p_value"]
    return _write(path, header, out)
