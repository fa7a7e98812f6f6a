"""Zero-shot transfer on two CPU cores: the baseline against one intermediate task, on the
real encoder (multilingual-e5-small) and the real samples shipped with xstilts.

The experiments are the demo's (English QA on XQuAD sentences, tested in English,
German, Chinese and Arabic; English POS tagging as the intermediate task), run for
each seed through the ordinary pipeline. It prints the per-language table (mean and
spread over seeds, the whole-sentence level beside it) and the wall time of every
experiment. The seed of the CPU-scale study presets.

    python benchmarks/transfer_cpu.py [--seeds 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xstilts.demo.real import (
    INTERMEDIATE,
    MODEL,
    TARGET,
    demo_configs,
    whole_sentence_levels,
    write_demo_data,
)
from xstilts.experiment.pipeline import run_experiment
from xstilts.model_store import is_installed
from xstilts.model_store.install import install
from xstilts.samples import XQUAD_LANGUAGES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    console = Console()
    if not is_installed(MODEL):
        install(MODEL, console)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        data = write_demo_data(out)
        scores: dict[str, list[dict[str, float]]] = {"baseline": [], INTERMEDIATE: []}
        timings = Table(title="wall time per experiment")
        for column in ("seed", "experiment", "seconds"):
            timings.add_column(column)
        for seed in args.seeds:
            for label, config in zip(scores, demo_configs(data), strict=True):
                config = config.model_copy(update={"seed": seed})
                started = time.perf_counter()
                results = run_experiment(config, out).results
                elapsed = time.perf_counter() - started
                timings.add_row(str(seed), label, f"{elapsed:.0f}")
                metric = results["metric"]
                scores[label].append(
                    {lang: results["languages"][lang][metric] for lang in XQUAD_LANGUAGES}
                )
        console.print(_transfer_table(scores, whole_sentence_levels(data), len(args.seeds)))
        console.print(timings)


def _transfer_table(
    scores: dict[str, list[dict[str, float]]], levels: dict[str, float], seeds: int
) -> Table:
    table = Table(title=f"{TARGET} F1, {MODEL}, mean ± sd over {seeds} seed(s)")
    for column in ("language", "whole sentence", "baseline", f"+ {INTERMEDIATE}", "difference"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for lang in XQUAD_LANGUAGES:
        before = [run[lang] for run in scores["baseline"]]
        after = [run[lang] for run in scores[INTERMEDIATE]]
        table.add_row(
            lang if lang == "en" else f"{lang} (zero-shot)",
            f"{levels[lang]:.1f}",
            _mean_sd(before),
            _mean_sd(after),
            f"{statistics.fmean(after) - statistics.fmean(before):+.1f}",
        )
    return table


def _mean_sd(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.1f}{spread}"


if __name__ == "__main__":
    main()
