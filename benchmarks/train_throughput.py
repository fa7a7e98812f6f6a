"""Training and evaluation throughput on real variable-length data: xstilts's loop
against the Hugging Face Trainer, and length-ordered against feature-order evaluation.

Data: the demo's stand-in tasks cut from the real samples shipped with xstilts
(``xquad_sentences``: XQuAD questions with their answer's sentence, span QA;
``ud_pos``: UD English EWT sentences, tagging; ``xquad_qnli``: question-sentence
pairs, classification), tokenised for the real encoder (multilingual-e5-small, with
the demo's freezing: embeddings and the lowest four layers).

Training: the same model (one copy of the same weights per run), the same features,
batch size, steps, learning rate schedule and dynamic-padding collator on every side:

- ``xstilts``: ``train_phase`` with its defaults (length-grouped batches, fused
  AdamW, losses read once per logging interval). Its end-of-phase validation and
  checkpoint are switched off here, as the Trainer runs without evaluation or saving;
- ``trainer``: ``transformers.Trainer`` with its default settings (random batches);
- ``trainer-grouped``: the same with ``group_by_length=True``;
- ``xstilts-random`` (``--variants``): our loop with ``group_by_length: false``;
- ``xstilts-eager`` (``--variants``): our loop with eager attention instead of SDPA;
- ``xstilts-compiled`` (``--compile``): our loop with ``runtime.compile``.

Evaluation: ``run_inference`` on each task's evaluation features, in length order
against feature order (the previous behaviour), with the predictions checked equal.

Each side trains one epoch of the task by default (``--steps`` cuts it), so every
side sees every example once: a few dozen steps would each draw other batches, and
the lengths of the batches drawn, not the loop, would decide the ratio (on a CPU a
POS step's time follows its padded length). The padding each side's batching leaves
is printed. Each repetition runs every side once, interleaved, so drifting load hits
all alike; printed: the median examples/s, the min-max spread, and the median of the
per-repetition ratios.

    python benchmarks/train_throughput.py [--quick] [--tasks ud_pos ...] [--steps N]
        [--repeats 3] [--batch-size 16] [--variants] [--compile] [--optimizers]

``--quick``: one task, 6 steps, one repetition (a smoke run, not a measurement).
``--optimizers``: also time one AdamW step (default, foreach, fused) on the
trainable parameters.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import datasets
import numpy as np
import torch
from torch import nn
from transformers import AutoModel, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from xstilts.config import ModelConfig, RuntimeConfig, TrainingConfig
from xstilts.experiment.runtime import get_accelerator
from xstilts.features import feature_lengths
from xstilts.formats import TaskFormat, get_format
from xstilts.inference import run_inference
from xstilts.model_store import model_location
from xstilts.modeling import MultiTaskModel, build_encoder, load_tokenizer
from xstilts.modeling.encoders import freeze
from xstilts.samples import write_stand_ins
from xstilts.tasks import load_registry
from xstilts.tasks.loading import load_split
from xstilts.tasks.spec import TaskSpec
from xstilts.train import loop
from xstilts.train.batches import BatchStream
from xstilts.train.loop import TrainTask, train_phase

MODEL = "multilingual-e5-small"
TASKS = ("xquad_sentences", "ud_pos", "xquad_qnli")
EVAL_SPLITS = {"xquad_sentences": "test", "ud_pos": "train", "xquad_qnli": "test"}
"""Evaluated for throughput (the scores do not matter). UD POS reads its 1,600 training
sentences: its validation split has 178, three batches of 64, too few to reorder."""
LEARNING_RATE = 5e-5


class TaskData:
    """One task's spec, format and features (train, and evaluation with examples)."""

    def __init__(self, name: str, data_dir: Path, task_file: Path, tokenizer, max_length: int):
        self.spec: TaskSpec = load_registry([task_file]).get(name)
        self.fmt: TaskFormat = get_format(self.spec.format)
        self.train = self._features("train", data_dir, tokenizer, max_length)[1]
        self.eval_examples, self.eval_features = self._features(
            EVAL_SPLITS[name], data_dir, tokenizer, max_length
        )

    def _features(self, split: str, data_dir: Path, tokenizer, max_length: int):
        fmt, spec = self.fmt, self.spec
        loaded = load_split(
            spec,
            split,  # type: ignore[arg-type]
            "en",
            fields=fmt.fields,
            check_row=fmt.check_row(spec),
            mode="local",
            data_dir=data_dir,
        )
        examples = loaded.examples
        if split == "train":
            examples, _ = fmt.prepare_training_examples(spec, examples)
        encode = partial(
            fmt.encode,
            tokenizer=tokenizer,
            spec=spec,
            max_length=max_length,
            training=split == "train",
        )
        features = examples.map(
            encode, batched=True, with_indices=True, remove_columns=examples.column_names
        )
        return examples, features


def fresh_model(pristine: nn.Module, task: TaskData) -> MultiTaskModel:
    encoder = copy.deepcopy(pristine)
    torch.manual_seed(0)
    head = task.fmt.build_head(task.spec, encoder)
    return MultiTaskModel(encoder, {task.spec.head_name: head}, {task.spec.head_name: task.fmt})


# -- the sides -----------------------------------------------------------------------


def run_xstilts(model: MultiTaskModel, task: TaskData, args, tokenizer, **options: Any) -> float:
    """Examples/s of ``train_phase`` (validation and checkpoints switched off)."""
    compile_encoder = options.pop("compile_encoder", False)
    config = TrainingConfig(
        learning_rate=LEARNING_RATE, max_steps=args.steps, warmup_fraction=0.1, **options
    )
    train_task = TrainTask(
        task.spec,
        task.fmt,
        task.train,
        task.eval_examples,
        task.eval_features,
        batch_size=args.batch_size,
    )
    with (
        tempfile.TemporaryDirectory() as phase_dir,
        mock.patch.object(loop, "_validate_and_track"),
        mock.patch.object(loop, "save_checkpoint"),
        mock.patch.object(loop, "atomic_write_json"),
    ):
        started = time.perf_counter()
        train_phase(
            model,
            [train_task],
            config,
            epochs=1,
            phase_dir=Path(phase_dir),
            seed=0,
            tokenizer=tokenizer,
            accelerator=get_accelerator(RuntimeConfig()),
            compile_encoder=compile_encoder,
        )
        return args.steps * args.batch_size / (time.perf_counter() - started)


class LossModel(nn.Module):
    """The same model and loss, called the way the Trainer calls a model."""

    def __init__(self, model: MultiTaskModel, task: TaskData) -> None:
        super().__init__()
        self.model, self.head, self.fmt = model, task.spec.head_name, task.fmt

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.fmt.loss(self.model(self.head, batch), batch)}


def run_trainer(model: MultiTaskModel, task: TaskData, args, tokenizer, grouped: bool) -> float:
    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return task.fmt.collate({k: [r[k] for r in rows] for k in rows[0]}, tokenizer.pad_token_id)

    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=LEARNING_RATE,
            warmup_ratio=0.1,
            max_grad_norm=1.0,
            group_by_length=grouped,
            remove_unused_columns=False,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=LossModel(model, task),
            args=arguments,
            train_dataset=task.train,
            data_collator=collate,
        )
        started = time.perf_counter()
        trainer.train()
        return args.steps * args.batch_size / (time.perf_counter() - started)


def run_eval(model: MultiTaskModel, task: TaskData, tokenizer, ordered: bool, store: dict) -> float:
    features = task.eval_features
    started = time.perf_counter()
    outputs = run_inference(
        model,
        task.spec.head_name,
        task.fmt,
        features,
        batch_size=64,
        pad_token_id=tokenizer.pad_token_id,
        device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        sort_by_length=ordered,
    )
    rate = len(features) / (time.perf_counter() - started)
    store[ordered] = task.fmt.predict(task.spec, task.eval_examples, features, outputs)
    return rate


# -- reporting -------------------------------------------------------------------------


def padding_ratio(features: datasets.Dataset, batch_size: int, grouped: bool) -> float:
    """Padded tokens over real tokens in one epoch of batches."""
    lengths = feature_lengths(features)
    stream = BatchStream(len(lengths), batch_size, 0, lengths=lengths if grouped else None)
    batches = [np.asarray(stream.next_indices()) for _ in range(stream.batches_per_epoch)]
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return padded / int(lengths.sum())


def trainer_padding_ratio(features: datasets.Dataset, batch_size: int) -> float:
    """The same for the Trainer's ``group_by_length`` sampler (seed 0)."""
    lengths = feature_lengths(features)
    sampler = LengthGroupedSampler(
        batch_size, lengths=lengths.tolist(), generator=torch.Generator().manual_seed(0)
    )
    order = np.asarray(list(sampler))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return padded / int(lengths.sum())


def report(title: str, rates: dict[str, list[float]], baseline_names: list[str]) -> None:
    print(f"  {title}")
    for name, values in rates.items():
        print(
            f"    {name:18s} {statistics.median(values):8.2f} /s  "
            f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
        )
    first = next(iter(rates))
    for baseline in baseline_names:
        ratios = [a / b for a, b in zip(rates[first], rates[baseline], strict=True)]
        print(
            f"    {first} / {baseline}: {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


def time_optimizers(model: nn.Module) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    print(f"  AdamW step over {count / 1e6:.1f}M trainable parameters (median of 5)")
    for name, options in [
        ("default", {}),
        ("foreach", {"foreach": True}),
        ("fused", {"fused": True}),
    ]:
        optimizer = torch.optim.AdamW(params, lr=1e-5, **options)
        optimizer.step()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - started)
        print(f"    {name:8s} {1000 * statistics.median(times):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--steps", type=int, default=None, help="default: one epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--variants", action="store_true", help="random batches, eager attention")
    parser.add_argument("--compile", action="store_true", help="one compiled run per task")
    parser.add_argument("--optimizers", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model",
        default=MODEL,
        help="model.name: another encoder, or a folder (on a GPU machine without the "
        "installed encoder, one built from its config: the same shapes, random weights)",
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.steps, args.repeats = args.tasks[:1], 6, 1
    datasets.disable_progress_bars()
    model_config = ModelConfig(name=args.model, freeze_embeddings=True, freeze_layers=4)
    tokenizer = load_tokenizer(model_config)
    pristine = build_encoder(model_config, tokenizer)
    print(
        f"{args.model} (embeddings and 4 layers frozen), batch {args.batch_size}, "
        f"{f'{args.steps} steps' if args.steps else 'one epoch'}, max length {args.max_length}, "
        f"{args.repeats} repetitions, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        task_file = write_stand_ins(data_dir)
        for name in args.tasks:
            task = TaskData(name, data_dir, task_file, tokenizer, args.max_length)
            bench_task(task, pristine, args, tokenizer)
    if args.optimizers:
        time_optimizers(fresh_model(pristine, task))


def bench_task(task: TaskData, pristine: nn.Module, args, tokenizer) -> None:
    args = copy.copy(args)
    args.steps = args.steps or -(-len(task.train) // args.batch_size)
    print(
        f"\n{task.spec.name} ({task.spec.format}): {len(task.train)} training features, "
        f"{args.steps} steps; padded/real tokens: random batches "
        f"{padding_ratio(task.train, args.batch_size, False):.2f}, "
        f"xstilts length-grouped {padding_ratio(task.train, args.batch_size, True):.2f}, "
        f"Trainer length-grouped {trainer_padding_ratio(task.train, args.batch_size):.2f}"
    )
    sides: dict[str, Callable[[], float]] = {}
    if not args.no_train:
        sides = {
            "xstilts": lambda: run_xstilts(fresh_model(pristine, task), task, args, tokenizer),
            "trainer": lambda: run_trainer(
                fresh_model(pristine, task), task, args, tokenizer, False
            ),
            "trainer-grouped": lambda: run_trainer(
                fresh_model(pristine, task), task, args, tokenizer, True
            ),
        }
        if args.variants:
            sides["xstilts-random"] = lambda: run_xstilts(
                fresh_model(pristine, task), task, args, tokenizer, group_by_length=False
            )
            eager = eager_encoder(args.model)
            sides["xstilts-eager"] = lambda: run_xstilts(
                fresh_model(eager, task), task, args, tokenizer
            )
    rates: dict[str, list[float]] = {side: [] for side in sides}
    eval_rates: dict[str, list[float]] = {"length order": [], "feature order": []}
    model = fresh_model(pristine, task)
    predictions: dict[bool, Any] = {}
    for _ in range(args.repeats):
        for side, run in sides.items():
            rates[side].append(run())
        eval_rates["length order"].append(run_eval(model, task, tokenizer, True, predictions))
        eval_rates["feature order"].append(run_eval(model, task, tokenizer, False, predictions))
        assert predictions[True] == predictions[False], "length order changed a prediction"
    if sides:
        report("training examples/s", rates, ["trainer", "trainer-grouped"])
    if args.compile:
        started = time.perf_counter()
        rate = run_xstilts(fresh_model(pristine, task), task, args, tokenizer, compile_encoder=True)
        print(
            f"    xstilts-compiled   {rate:8.2f} /s  (one run of {args.steps} steps, "
            f"{time.perf_counter() - started:.0f} s with compilation)"
        )
    report(
        f"evaluation features/s ({len(task.eval_features)} features, batch 64, "
        "predictions identical)",
        eval_rates,
        ["feature order"],
    )


def eager_encoder(name: str) -> nn.Module:
    """The encoder with the eager attention (BERT picks its attention class when built)."""
    encoder = AutoModel.from_pretrained(
        model_location(name), attn_implementation="eager", add_pooling_layer=False
    )
    freeze(encoder, embeddings=True, layers=4)
    return encoder


if __name__ == "__main__":
    main()
