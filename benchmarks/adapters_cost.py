"""Steps per second and peak training memory of adapter training against full
fine-tuning, on the same model and the same batches, through the one training loop.

Each variant trains the same classification task (English question + sentence
pairs cut from the shipped XQuAD sample) for the same steps in a fresh process:
full fine-tuning of the encoder, then bottleneck (seq_bn), LoRA, prefix tuning and
IA3 adapters over the frozen encoder. Variants run interleaved, repeated; the
median of each is printed with two ratios to full fine-tuning: time per step, and
the memory training adds on top of the built model (peak resident memory sampled
every 5 ms on the CPU, torch's peak allocation on a GPU). Adapters skip the
encoder's weight gradients and their Adam moments, so expect most of the saving in
memory and the backward pass.

    python benchmarks/adapters_cost.py [--steps 40] [--repeats 3] [--hidden 256]
    python benchmarks/adapters_cost.py --model multilingual-e5-small --steps 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import datasets
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adversarial_cost import SPEC, sentence_pairs

from xstilts.config import ModelConfig, RuntimeConfig, TinyModelConfig, TrainingConfig
from xstilts.experiment.runtime import get_accelerator
from xstilts.formats.classification import Classification
from xstilts.modeling import (
    AdapterSetup,
    AdapterSpec,
    MultiTaskModel,
    attach_adapters,
    build_encoder,
    load_tokenizer,
)
from xstilts.train.loop import TrainTask, train_phase

VARIANTS = ("full", "seq_bn", "lora", "prefix_tuning", "ia3")
PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The highest resident memory (CPU) seen while active, sampled in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.resident())
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.resident())


def model_config(args: argparse.Namespace) -> ModelConfig:
    if args.model:
        return ModelConfig(name=args.model)
    hidden = args.hidden
    tiny = TinyModelConfig(
        hidden_size=hidden, num_layers=4, num_heads=4, intermediate_size=4 * hidden
    )
    return ModelConfig(tiny=tiny)


def measure(variant: str, args: argparse.Namespace) -> tuple[float, int, int]:
    """(steps per second, bytes training added, parameters trained) of one variant."""
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    config = model_config(args)
    tokenizer = load_tokenizer(config)
    examples = datasets.Dataset.from_list(sentence_pairs(args.steps * args.batch))
    encode = partial(Classification().encode, tokenizer=tokenizer, spec=SPEC, max_length=128)
    features = examples.map(
        encode, batched=True, with_indices=True, remove_columns=examples.column_names
    )
    accelerator = get_accelerator(RuntimeConfig())
    torch.manual_seed(0)
    encoder = build_encoder(config, tokenizer)
    fmt = Classification()
    heads = {"pairs": fmt.build_head(SPEC, encoder)}
    setup, routes = None, None
    if variant != "full":
        setup = AdapterSetup(
            new=[AdapterSpec("pairs", variant)], head_adapters={"pairs": "pairs"}, trained=["pairs"]
        )
        routes = attach_adapters(encoder, setup, ["pairs"])
    model = MultiTaskModel(encoder, heads, {"pairs": fmt}, adapters=setup, routes=routes)
    model.to(accelerator.device)
    validation = range(16)  # validated once, at the end; the timing is of training
    task = TrainTask(
        SPEC, fmt, features, examples.select(validation), features.select(validation),
        batch_size=args.batch,
    )  # fmt: skip
    training = TrainingConfig(learning_rate=1e-4, max_steps=args.steps, eval_every_steps=10**9)
    on_gpu = accelerator.device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with tempfile.TemporaryDirectory() as phase_dir, PeakMemory() as memory:
        before_cpu = PeakMemory.resident()
        started = time.perf_counter()
        train_phase(
            model, [task], training, epochs=1, phase_dir=Path(phase_dir), seed=0,
            tokenizer=tokenizer, accelerator=accelerator,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    added = torch.cuda.max_memory_allocated() - before if on_gpu else memory.peak - before_cpu
    return args.steps / elapsed, added, model.parameter_counts()["trained"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default=None, help="e.g. multilingual-e5-small")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    if args.variants[0] != "full":
        args.variants.insert(0, "full")
    # A fresh process per measurement: memory peaks must not carry over.
    context = multiprocessing.get_context("spawn")
    results: dict[str, list[tuple[float, int, int]]] = {v: [] for v in args.variants}
    with context.Pool(1, maxtasksperchild=1) as pool:
        for _ in range(args.repeats):  # interleaved: drifting machine load hits every variant
            for variant in args.variants:
                results[variant].append(pool.apply(measure, (variant, args)))
    name = args.model or f"tiny encoder (hidden {args.hidden}, 4 layers)"
    print(
        f"{name}, {args.steps} steps of batch {args.batch}, {args.threads} torch threads, "
        f"median of {args.repeats}"
    )
    full_speed = statistics.median(r[0] for r in results["full"])
    full_memory = statistics.median(r[1] for r in results["full"])
    for variant in args.variants:
        speed = statistics.median(r[0] for r in results[variant])
        memory = statistics.median(r[1] for r in results[variant])
        trained = results[variant][0][2]
        print(
            f"{variant:>13}: {speed:6.2f} steps/s  time per step x{full_speed / speed:.2f}  "
            f"training memory {memory / 2**20:7.1f} MiB  x{memory / full_memory:.2f}  "
            f"parameters trained {trained:,}"
        )


if __name__ == "__main__":
    main()
