"""Steps per second of single-task against multi-task training with the same per-step work.

Both runs go through the one training loop (xstilts.train.loop.train_phase) on
the same features: the single-task run trains one classification task; the
multi-task run trains two copies of it with separate heads, drawn uniformly, so
each step does the same amount of work and only the multi-task machinery
(sampling, per-task streams, head routing) differs. Goal: overhead <= 5%.

    python benchmarks/multitask_overhead.py [--steps 400] [--hidden 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import datasets
import torch

from xstilts.config import ModelConfig, RuntimeConfig, TinyModelConfig, TrainingConfig
from xstilts.demo.smoke import paraphrase_example
from xstilts.experiment.runtime import get_accelerator
from xstilts.formats.classification import Classification
from xstilts.modeling import MultiTaskModel, build_encoder, load_tokenizer
from xstilts.tasks.spec import TaskSpec
from xstilts.train.loop import TrainTask, train_phase


def features(tokenizer, spec: TaskSpec, size: int, seed: int) -> datasets.Dataset:
    import random

    rng = random.Random(seed)
    rows = [paraphrase_example(rng, "en") for _ in range(size)]
    examples = datasets.Dataset.from_list(
        [{"text_a": r["sentence1"], "text_b": r["sentence2"], "label": r["label"]} for r in rows]
    )
    encode = partial(Classification().encode, tokenizer=tokenizer, spec=spec, max_length=64)
    return examples, examples.map(
        encode, batched=True, with_indices=True, remove_columns=examples.column_names
    )


def run(task_names: list[str], args, tokenizer, model_config, data) -> float:
    _, train, validation_examples, validation = data
    fmt = Classification()
    specs = [
        TaskSpec(name=n, family="x", format="classification", labels=["0", "1"]) for n in task_names
    ]
    torch.manual_seed(0)
    encoder = build_encoder(model_config, tokenizer)
    model = MultiTaskModel(
        encoder, {s.name: fmt.build_head(s, encoder) for s in specs}, {s.name: fmt for s in specs}
    )
    tasks = [
        TrainTask(s, fmt, train, validation_examples, validation, batch_size=32) for s in specs
    ]
    config = TrainingConfig(
        learning_rate=1e-4, max_steps=args.steps, eval_every_steps=args.steps, eval_batch_size=64
    )
    with tempfile.TemporaryDirectory() as phase_dir:
        started = time.perf_counter()
        train_phase(
            model,
            tasks,
            config,
            epochs=1,
            phase_dir=Path(phase_dir),
            seed=0,
            tokenizer=tokenizer,
            accelerator=get_accelerator(RuntimeConfig()),
        )
        return args.steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    model_config = ModelConfig(
        tiny=TinyModelConfig(
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=4,
            intermediate_size=4 * args.hidden,
        )
    )
    tokenizer = load_tokenizer(model_config)
    spec = TaskSpec(name="a", family="x", format="classification", labels=["0", "1"])
    examples, train = features(tokenizer, spec, 4000, seed=1)
    validation_examples, validation = features(tokenizer, spec, 64, seed=2)
    data = (examples, train, validation_examples, validation)
    single, multi = [], []
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        single.append(run(["a"], args, tokenizer, model_config, data))
        multi.append(run(["a", "b"], args, tokenizer, model_config, data))
    best_single, best_multi = max(single), max(multi)
    print(
        f"{args.steps} steps, batch 32, hidden {args.hidden}, {args.layers} layers, "
        f"torch threads {torch.get_num_threads()}, best of {args.repeats}"
    )
    print(f"single-task: {best_single:8.2f} steps/s")
    print(f"multi-task:  {best_multi:8.2f} steps/s  (2 tasks, same per-step work)")
    print(f"overhead of multi-task: {100 * (best_single / best_multi - 1):+.1f}%  (goal: <= 5%)")


if __name__ == "__main__":
    main()
