"""Zero-shot transfer on two CPU cores: the baseline against one intermediate task (and,
with --adversarial, that intermediate task trained adversarially), on the real encoder
(multilingual-e5-small) and the real samples shipped with xstilts.

The experiments are xquad_setup.py's (English QA on XQuAD sentences, tested in English,
German, Chinese and Arabic; English POS tagging as the intermediate task), run for
each seed through the ordinary pipeline. It prints the per-language table (mean and
spread over seeds, the whole-sentence level beside it), each adversarial variant's
difference to standard intermediate training, and the wall time of every experiment.
The seed of the CPU-scale study presets.

    python benchmarks/transfer_cpu.py [--seeds 1 2] [--adversarial freelb smart] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from xquad_setup import (
    INTERMEDIATE,
    MODEL,
    TARGET,
    setup_configs,
    whole_sentence_levels,
)

from xstilts.config import AdversarialConfig, ExperimentConfig
from xstilts.demo.real import write_demo_data
from xstilts.experiment.pipeline import run_experiment
from xstilts.model_store import is_installed
from xstilts.model_store.install import install
from xstilts.samples import XQUAD_LANGUAGES

Scores = dict[str, list[dict[str, float]]]
"""Per experiment label, one {language: F1} per seed."""


def experiments(configs: tuple[ExperimentConfig, ExperimentConfig], methods: list[str]):
    """(label, config): the baseline, the intermediate task, and its adversarial variants."""
    baseline, standard = configs
    found = [("baseline", baseline), (INTERMEDIATE, standard)]
    for method in methods:
        variant = standard.model_copy(deep=True)
        assert variant.intermediate is not None
        variant.intermediate.training.adversarial = AdversarialConfig(method=method)
        found.append((f"{INTERMEDIATE}+{method}", variant))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--adversarial", nargs="*", default=[], help="e.g. freelb smart")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    console = Console()
    if not is_installed(MODEL):
        install(MODEL, console)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        data = write_demo_data(out)
        planned = experiments(setup_configs(data), args.adversarial)
        scores: Scores = {label: [] for label, _ in planned}
        timings = Table(title="wall time per experiment")
        for column in ("seed", "experiment", "seconds"):
            timings.add_column(column)
        for seed in args.seeds:
            for label, config in planned:
                config = config.model_copy(update={"seed": seed})
                started = time.perf_counter()
                results = run_experiment(config, out).results
                timings.add_row(str(seed), label, f"{time.perf_counter() - started:.0f}")
                metric = results["metric"]
                scores[label].append(
                    {lang: results["languages"][lang][metric] for lang in XQUAD_LANGUAGES}
                )
        console.print(_transfer_table(scores, whole_sentence_levels(data), len(args.seeds)))
        if args.adversarial:
            console.print(_adversarial_table(scores))
        console.print(timings)


def _transfer_table(scores: Scores, levels: dict[str, float], seeds: int) -> Table:
    table = Table(title=f"{TARGET} F1, {MODEL}, mean ± sd over {seeds} seed(s)")
    for column in ("language", "whole sentence", *scores):
        table.add_column(column, justify="left" if column == "language" else "right")
    for lang in XQUAD_LANGUAGES:
        cells = [_mean_sd([run[lang] for run in runs]) for runs in scores.values()]
        name = lang if lang == "en" else f"{lang} (zero-shot)"
        table.add_row(name, f"{levels[lang]:.1f}", *cells)
    return table


def _adversarial_table(scores: Scores) -> Table:
    """Each adversarial variant minus standard intermediate training, per language."""
    variants = [label for label in scores if label.startswith(f"{INTERMEDIATE}+")]
    table = Table(title=f"adversarial minus standard {INTERMEDIATE} training (F1 points)")
    for column in ("language", *variants):
        table.add_column(column, justify="left" if column == "language" else "right")
    standard = scores[INTERMEDIATE]
    for lang in [*XQUAD_LANGUAGES, "non-English mean"]:
        cells = []
        for label in variants:
            diffs = [
                _value(run, lang) - _value(base, lang)
                for run, base in zip(scores[label], standard, strict=True)
            ]
            cells.append(f"{statistics.fmean(diffs):+.1f}")
        table.add_row(lang, *cells)
    return table


def _value(run: dict[str, float], lang: str) -> float:
    if lang == "non-English mean":
        return statistics.fmean(v for key, v in run.items() if key != "en")
    return run[lang]


def _mean_sd(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.1f}{spread}"


if __name__ == "__main__":
    main()
