"""Figures of a grid (matplotlib, Agg backend): heatmap, per-language plot, learning curves."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from xstilts.report.data import GridScores
from xstilts.report.robustness import RobustnessRow
from xstilts.report.statistics import stars
from xstilts.report.tables import MainRow


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap(rows: list[MainRow], targets: list[str], path: Path) -> Path:
    """Difference to the baseline, intermediate option x target task (* significant
    after the main table's correction)."""
    rows = [r for r in rows if not r.option.is_baseline] or rows
    data = np.array(
        [
            [np.nan if (c := r.cells[t]) is None or c.diff is None else c.diff for t in targets]
            for r in rows
        ],
        dtype=float,
    )
    limit = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
    limit = limit or 1.0
    longest = max((len(r.option.label) for r in rows), default=0)
    width = max(4.5, 1.4 + 1.1 * len(targets) + 0.07 * longest)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.45 * len(rows)))
    image = ax.imshow(data, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [r.option.label for r in rows])
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            cell = row.cells[target]
            if cell is not None and cell.diff is not None:
                ax.text(
                    j,
                    i,
                    f"{cell.diff:+.2g}{stars(cell.test)}",
                    ha="center",
                    va="center",
                    fontsize=8,
                )
    fig.colorbar(image, ax=ax, label="difference to baseline")
    ax.set_title("Difference to baseline")
    return _save(fig, path)


def per_language(grid: GridScores, target: str, path: Path) -> Path:
    """Grouped bars: per-language score of ``target`` (mean over seeds), one per option."""
    langs = grid.languages(target)
    options = [o for o in grid.options if grid.seeds(o.label, target)]
    width = 0.8 / max(len(options), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(langs) * max(1, len(options) / 3)), 3.5))
    x = np.arange(len(langs))
    for k, option in enumerate(options):
        values = []
        for lang in langs:
            vals = [
                grid.lang[(option.label, target, s)].get(lang)
                for s in grid.seeds(option.label, target)
            ]
            vals = [v for v in vals if v is not None]
            values.append(statistics.fmean(vals) if vals else np.nan)
        ax.bar(x + (k - (len(options) - 1) / 2) * width, values, width, label=option.label)
    ax.set_xticks(x, langs)
    ax.set_ylabel("score")
    ax.set_title(f"{target}: score per language")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def learning_curves(grid: GridScores, path: Path) -> Path:
    """Target score against the number of intermediate training examples (log scale):
    one connected line per series of options that differ only in size, the uncapped
    option ("all") as its last point; the baseline as a dashed line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    series = grid.series()
    base = grid.baseline
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    for i, target in enumerate(grid.targets):
        color = colors[i % len(colors)]
        for j, ((tasks, adversarial, adapters), members) in enumerate(series.items()):
            points = [
                (size, statistics.fmean(scores))
                for option in members
                if (size := option.train_examples or option.examples) is not None
                and (scores := grid.task_scores(option.label, target))
            ]
            if points:
                name = "+".join(tasks) + "".join(f" {x}" for x in (adversarial, adapters) if x)
                label = target if len(series) == 1 else f"{target} / {name}"
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=markers[j % len(markers)], color=color, label=label)
        if base is not None and (scores := grid.task_scores(base.label, target)):
            ax.axhline(
                statistics.fmean(scores),
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{target} baseline",
            )
    ax.set_xscale("log")
    ax.set_xlabel("intermediate training examples (log scale)")
    ax.set_ylabel(f"target {grid.metric}")
    ax.set_title("Learning curves")
    ax.legend(fontsize=7)
    return _save(fig, path)


def robustness(rows: list[RobustnessRow], path: Path) -> Path:
    """Per target, each option's mean against its SD over seeds (over languages when a
    run has one seed); lower right is better; marker size: the English-to-zero-shot gap."""
    targets = list(dict.fromkeys(row.target for row in rows))
    fig, axes = plt.subplots(
        1, len(targets), figsize=(max(6.0, 4.5 * len(targets)), 4), squeeze=False
    )
    for ax, target in zip(axes[0], targets, strict=True):
        members = [r for r in rows if r.target == target]
        spread = "seed_sd" if all(r.values["seed_sd"] is not None for r in members) else None
        spread = spread or "language_sd"
        for row in members:
            y = row.values[spread]
            if y is None:
                continue
            size = 20 + 8 * abs(row.values["gap"] or 0.0)
            marker = "s" if row.option.is_baseline else "o"
            ax.scatter(row.values["mean"], y, s=size, marker=marker, alpha=0.7)
            ax.annotate(row.option.label, (row.values["mean"], y), fontsize=7)
        ax.set_title(target)
        ax.set_xlabel("mean score")
        ax.set_ylabel("SD over seeds" if spread == "seed_sd" else "SD over languages")
    fig.suptitle("Robustness (square: baseline; marker size: |en - zero-shot gap|)", fontsize=9)
    return _save(fig, path)
