"""Steps per second of each adversarial method relative to standard training, on the
same model and the same batches, through the one training loop.

Each method trains the same classification task (real English sentence pairs cut
from the shipped XQuAD sample: question + answer sentence, or + another sentence)
for the same number of steps; the methods run interleaved, repeated, and the median
of each is reported with its ratio to standard training. Expect about K + 1 times
the work for K ascent steps (FreeLB: K passes; SMART and R3F: 2-3 passes).

    python benchmarks/adversarial_cost.py [--steps 60] [--repeats 3] [--hidden 128]
    python benchmarks/adversarial_cost.py --model multilingual-e5-small --steps 10
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import datasets
import torch

from xstilts.config import (
    AdversarialConfig,
    ModelConfig,
    RuntimeConfig,
    TinyModelConfig,
    TrainingConfig,
)
from xstilts.experiment.runtime import get_accelerator
from xstilts.formats.classification import Classification
from xstilts.modeling import MultiTaskModel, build_encoder, load_tokenizer
from xstilts.samples import real_samples, sentence_articles
from xstilts.tasks.readers import squad_articles
from xstilts.tasks.spec import TaskSpec
from xstilts.train.adversarial import make_objective
from xstilts.train.loop import TrainTask, train_phase

METHODS = ("none", "fgm", "pgd", "freelb", "smart", "r3f")
SPEC = TaskSpec(name="pairs", family="x", format="classification", labels=["0", "1"])


def sentence_pairs(count: int) -> list[dict[str, object]]:
    """Question + its answer sentence (label 1) or + another sentence (label 0)."""
    path = real_samples() / "xquad" / "xquad.en.json"
    articles = sentence_articles(squad_articles(path), path)
    items = [
        (qa["question"], p["context"]) for a in articles for p in a["paragraphs"] for qa in p["qas"]
    ]
    rng = random.Random(0)
    rows = []
    for index in range(count):
        question, sentence = items[index % len(items)]
        if index % 2:
            sentence = rng.choice(items)[1]
        rows.append({"text_a": question, "text_b": sentence, "label": 1 - index % 2})
    return rows


def run(method: str, args, tokenizer, model_config, data) -> float:
    examples, features = data
    torch.manual_seed(0)
    encoder = build_encoder(model_config, tokenizer)
    fmt = Classification()
    model = MultiTaskModel(encoder, {"pairs": fmt.build_head(SPEC, encoder)}, {"pairs": fmt})
    adversarial = None if method == "none" else AdversarialConfig(method=method)
    validation = range(16)  # validated once, at the end; the timing is of training
    task = TrainTask(
        SPEC, fmt, features, examples.select(validation), features.select(validation),
        batch_size=args.batch, objective=make_objective(adversarial),
    )  # fmt: skip
    config = TrainingConfig(learning_rate=1e-4, max_steps=args.steps, eval_every_steps=10**9)
    with tempfile.TemporaryDirectory() as phase_dir:
        started = time.perf_counter()
        train_phase(
            model,
            [task],
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
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--model", default=None, help="e.g. multilingual-e5-small")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    if args.model:
        model_config = ModelConfig(name=args.model, freeze_embeddings=True)
    else:
        tiny = TinyModelConfig(
            hidden_size=args.hidden, num_layers=4, num_heads=4, intermediate_size=4 * args.hidden
        )
        model_config = ModelConfig(tiny=tiny)
    tokenizer = load_tokenizer(model_config)
    examples = datasets.Dataset.from_list(sentence_pairs(args.steps * args.batch))
    encode = partial(Classification().encode, tokenizer=tokenizer, spec=SPEC, max_length=128)
    features = examples.map(
        encode, batched=True, with_indices=True, remove_columns=examples.column_names
    )
    speeds: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):  # interleaved: drifting machine load hits every method
        for method in METHODS:
            speeds[method].append(run(method, args, tokenizer, model_config, (examples, features)))
    name = args.model or f"tiny encoder (hidden {args.hidden}, 4 layers)"
    print(
        f"{name}, {args.steps} steps of batch {args.batch}, torch threads "
        f"{torch.get_num_threads()}, median of {args.repeats} (min-max)"
    )
    standard = statistics.median(speeds["none"])
    for method in METHODS:
        median = statistics.median(speeds[method])
        spread = f"{min(speeds[method]):.2f}-{max(speeds[method]):.2f}"
        print(
            f"{method:>7}: {median:7.2f} steps/s ({spread})   "
            f"time per step x{standard / median:.2f} of standard"
        )


if __name__ == "__main__":
    main()
