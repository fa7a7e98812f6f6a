"""Predicted against measured: how each transferability estimator ranked a grid's
options beside the scores their target runs measured (from ``xstilts select
--evaluate``, which keeps its comparison in the grid's folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from xstilts.report.render import Table
from xstilts.selection.settings import EVALUATION_FILE

METRICS = ("spearman", "ndcg@3", "regret@1", "regret@3")


def load_selection(grid_dir: Path) -> dict[str, Any] | None:
    path = grid_dir / EVALUATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def selection_table(saved: dict[str, Any]) -> Table:
    """Per estimator, its agreement with the zero-shot scores averaged over targets, and
    its cost as a share of the target runs it ranks."""
    rows = []
    for method, found in saved.items():
        means = found["mean"]["zero-shot"]
        share = found.get("cost_share")
        rows.append(
            [
                method,
                str(len(found["targets"])),
                *(_number(means.get(m)) for m in METRICS),
                "-" if share is None else f"{100 * share:.1f}%",
            ]
        )
    return Table(
        title="Choosing intermediate tasks: estimates against measured zero-shot scores",
        header=["estimator", "targets", *METRICS, "cost"],
        rows=rows,
        notes=[
            "Means over targets. regret@k: the best option's measured zero-shot average "
            "minus the best of the estimator's top k, in points. random: the expectation "
            "over all orders; size: the intermediate dataset's size. Cost: the estimator's "
            "seconds over those of the target runs it ranks."
        ],
    )


def selection_figure(saved: dict[str, Any], path: Path) -> Path:
    """One panel per (estimator, target): each option's estimate against its measured
    zero-shot score."""
    panels = [
        (method, target)
        for method, found in saved.items()
        if method != "random"
        for target in found["targets"]
    ]
    columns = max(1, len({t["target"] for _, t in panels}))
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    # One colour per option across every panel, so an option reads the same everywhere.
    options = sorted({option for _, target in panels for option in target["options"]})
    colours = {option: f"C{index % 10}" for index, option in enumerate(options)}
    for ax, (method, target) in zip(axes.flat, panels, strict=False):
        points = [
            (estimate, measured["zero-shot"], option)
            for estimate, measured, option in zip(
                target["estimates"], target["measured"], target["options"], strict=True
            )
            if estimate is not None and measured["zero-shot"] is not None
        ]
        for x, y, label in points:
            ax.scatter(x, y, s=14, color=colours[label])
            ax.annotate(label, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_title(f"{method}: {target['target']}", fontsize=8)
        ax.set_xlabel("estimate", fontsize=7)
        ax.set_ylabel("measured zero-shot", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
