"""Adapters against full fine-tuning for zero-shot transfer, on two CPU cores with the
real encoder (multilingual-e5-small) and the real samples shipped with xstilts.

The target is xquad_setup.py's: extractive QA trained on English XQuAD sentences, tested in
English and zero-shot in German, Chinese and Arabic. Each option runs through the
ordinary pipeline:

* full: the encoder fine-tuned (embeddings frozen, as in xquad_setup.py),
* seq_bn: a bottleneck adapter over the frozen encoder,
* lora: a LoRA adapter (r 8) over the frozen encoder,
* fusion: AdapterFusion over two task adapters of a multi-task intermediate phase
  (English POS tagging and the QA task itself, AdapterFusion's recipe), the fusion
  layer and the QA head trained on the target.

It prints, per option, F1 per language, the average over languages and over the
zero-shot ones, parameters trained and wall time.

    python benchmarks/adapters_transfer_cpu.py [--seeds 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from xquad_setup import INTERMEDIATE, MODEL, TARGET, whole_sentence_levels

from xstilts.config import ExperimentConfig, parse_config
from xstilts.demo.real import write_demo_data
from xstilts.experiment.pipeline import run_experiment
from xstilts.model_store import is_installed
from xstilts.model_store.install import install
from xstilts.samples import XQUAD_LANGUAGES

TRAINING = {"batch_size": 16, "epochs": 1, "max_length": 128}


def options(
    data_dir: Path, task_file: Path, cache_dir: Path, adapter_lr: float
) -> dict[str, ExperimentConfig]:
    base: dict[str, Any] = {
        "model": {"name": MODEL, "freeze_embeddings": True},
        "evaluation": {"languages": list(XQUAD_LANGUAGES)},
        "data": {
            "source": "local",
            "data_dir": str(data_dir),
            "task_files": [str(task_file)],
            "cache_dir": str(cache_dir),
        },
    }

    def target(learning_rate: float, adapters: dict[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "task": TARGET,
            "training": {**TRAINING, "learning_rate": learning_rate},
        }
        if adapters is not None:
            section["adapters"] = adapters
        return section

    fusion_intermediate = {
        "tasks": [INTERMEDIATE, TARGET],
        "training": {**TRAINING, "learning_rate": 1e-3, "max_train_examples": 800},
        "adapters": {"kind": "seq_bn"},
    }
    payloads = {
        "full": {**base, "target": target(2e-4)},
        "seq_bn": {**base, "target": target(adapter_lr, {"kind": "seq_bn"})},
        "lora": {
            **base,
            "target": target(adapter_lr, {"kind": "lora", "options": {"r": 8, "alpha": 16}}),
        },
        "fusion": {
            **base,
            "intermediate": fusion_intermediate,
            "target": target(5e-4, {"start": "fusion"}),
        },
    }
    return {label: parse_config(p, source=label) for label, p in payloads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--only", nargs="+", default=None, help="a subset of the options")
    parser.add_argument("--adapter-lr", type=float, default=1e-3, help="seq_bn and lora")
    args = parser.parse_args()
    console = Console(width=150)
    if not is_installed(MODEL):
        install(MODEL, console)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        data = write_demo_data(out)
        planned = options(data.data_dir, data.task_file, data.cache_dir, args.adapter_lr)
        planned = {k: v for k, v in planned.items() if args.only is None or k in args.only}
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label in planned}
        for seed in args.seeds:
            for label, config in planned.items():
                started = time.perf_counter()
                results = run_experiment(config.model_copy(update={"seed": seed}), out).results
                rows[label].append({**results, "seconds": time.perf_counter() - started})
        console.print(_table(rows, whole_sentence_levels(data)))


def _table(rows: dict[str, list[dict[str, Any]]], levels: dict[str, float]) -> Table:
    seeds = len(next(iter(rows.values())))
    table = Table(title=f"{TARGET} F1 per language, {MODEL}, mean over {seeds} seed(s)")
    columns = ["option", *XQUAD_LANGUAGES, "avg", "avg zero-shot", "trained", "of", "seconds"]
    for column in columns:
        table.add_column(column, justify="left" if column == "option" else "right")
    table.add_row("whole sentence", *(f"{levels[lang]:.1f}" for lang in XQUAD_LANGUAGES))
    for label, runs in rows.items():
        f1 = {
            lang: statistics.fmean(run["languages"][lang]["f1"] for run in runs)
            for lang in XQUAD_LANGUAGES
        }
        zero_shot = [f1[lang] for lang in XQUAD_LANGUAGES if lang != "en"]
        counts = runs[0]["parameters"]["target"]
        table.add_row(
            label,
            *(f"{f1[lang]:.1f}" for lang in XQUAD_LANGUAGES),
            f"{statistics.fmean(f1.values()):.1f}",
            f"{statistics.fmean(zero_shot):.1f}",
            f"{counts['trained']:,}",
            f"{counts['total']:,}",
            f"{statistics.fmean(run['seconds'] for run in runs):.0f}",
        )
    return table


if __name__ == "__main__":
    main()
