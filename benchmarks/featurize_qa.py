"""Featurise SQuAD-format QA data with xstilts and with the Hugging Face recipe; print ratios.

The usual alternative is the recipe of the Hugging Face question-answering
example (run_qa.py, ``prepare_train_features`` and ``prepare_validation_features``):
a fast tokenizer with ``return_overflowing_tokens`` and ``return_offsets_mapping``,
answer positions found by walking each window's offsets, applied with batched
``datasets.map``; ``padding=False`` is its dynamic-padding setting (the collator
pads each batch), padding to the maximum length its default. It is rewritten here
from that description so that both sides run on the same tokenizer and rows.

The comparison uses the same windows on both sides: ``doc_stride_meaning: overlap``
(the tokenizer's ``stride``, as in the recipe) and no cap on question length. Before
timing, the recipe's token ids and start/end positions (up to two quirks of the
recipe that xstilts fixes, see recipe_quirks_fixed) are checked to equal xstilts's.
xstilts's default ``step`` meaning (XTREME's; more windows at the same number) is
timed too, for information. Each round times every featuriser once, in a rotating
order; the median over rounds and the min-max spread are printed, and the ratio is
the median of the per-round ratios (> 1: xstilts is faster).

    python benchmarks/featurize_qa.py [--quick] [--files a.json ...] [--tokenizer PATH]
        [--max-length 384] [--stride 128] [--rounds 5] [--split train|validation|both]

Defaults: the four real XQuAD files shipped in xstilts (resources/real/xquad, 4,760
questions) and the shipped tiny tokenizer (a SentencePiece Unigram model like XLM-R's).
``--quick``: 200 questions of one file, 2 rounds (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import datasets

from xstilts.config import ModelConfig, TinyModelConfig
from xstilts.formats.span_qa import SpanQA
from xstilts.modeling import load_tokenizer
from xstilts.samples import real_samples
from xstilts.tasks.readers import read_squad
from xstilts.tasks.spec import TaskSpec

REAL = real_samples() / "xquad"
NO_QUESTION_CAP = 100_000


def load_rows(files: list[Path], limit: int | None) -> datasets.Dataset:
    rows = []
    for path in files:
        for _, row in read_squad(path):
            rows.append(
                {
                    "id": row["id"],
                    "question": row["question"],
                    "context": row["context"],
                    "answers": [
                        {"text": a["text"], "answer_start": a["answer_start"]}
                        for a in row["answers"]
                    ],
                }
            )
    return datasets.Dataset.from_list(rows[:limit])


def _recipe_windows(examples, tokenizer, max_length: int, stride: int, padding: str | bool):
    return tokenizer(
        [q.lstrip() for q in examples["question"]],
        examples["context"],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )


def recipe_train(examples, tokenizer, max_length: int, stride: int, padding: str | bool):
    """prepare_train_features of the Hugging Face QA example."""
    tokenized = _recipe_windows(examples, tokenizer, max_length, stride, padding)
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        if not answers:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = answers[0]["answer_start"]
        end_char = start_char + len(answers[0]["text"])
        token_start = 0
        while sequence_ids[token_start] != 1:
            token_start += 1
        token_end = len(input_ids) - 1
        while sequence_ids[token_end] != 1:
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        starts.append(token_start - 1)
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        ends.append(token_end + 1)
    tokenized["start_positions"] = starts
    tokenized["end_positions"] = ends
    return tokenized


def recipe_validation(examples, tokenizer, max_length: int, stride: int, padding: str | bool):
    """prepare_validation_features of the Hugging Face QA example: offsets of context
    tokens only (None elsewhere) and the example id of each window."""
    tokenized = _recipe_windows(examples, tokenizer, max_length, stride, padding)
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = []
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        tokenized["example_id"].append(examples["id"][sample_mapping[i]])
        tokenized["offset_mapping"][i] = [
            offset if sequence_ids[k] == 1 else None
            for k, offset in enumerate(tokenized["offset_mapping"][i])
        ]
    return tokenized


def featurisers(
    rows: datasets.Dataset, tokenizer, args: argparse.Namespace, training: bool
) -> dict[str, Callable[[], datasets.Dataset]]:
    columns = rows.column_names
    fmt = SpanQA()

    def ours(meaning: str) -> Callable[[], datasets.Dataset]:
        spec = TaskSpec(
            name="bench",
            family="qa",
            format="span_qa",
            metric="squad",
            options={
                "doc_stride": args.stride,
                "doc_stride_meaning": meaning,
                "max_question_length": NO_QUESTION_CAP,
            },
        )
        encode = partial(
            fmt.encode,
            tokenizer=tokenizer,
            spec=spec,
            max_length=args.max_length,
            training=training,
        )
        return lambda: rows.map(encode, batched=True, with_indices=True, remove_columns=columns)

    def theirs(padding: str | bool) -> Callable[[], datasets.Dataset]:
        recipe = partial(
            recipe_train if training else recipe_validation,
            tokenizer=tokenizer,
            max_length=args.max_length,
            stride=args.stride,
            padding=padding,
        )
        return lambda: rows.map(recipe, batched=True, remove_columns=columns)

    return {
        "xstilts, doc_stride_meaning overlap": ours("overlap"),
        "HF recipe, dynamic padding": theirs(False),
        "HF recipe, padded to max length": theirs("max_length"),
        "xstilts, doc_stride_meaning step": ours("step"),
    }


def recipe_quirks_fixed(theirs: datasets.Dataset, special_ids: set[int]) -> tuple[list, list]:
    """The recipe's positions with its two quirks fixed, as xstilts does: an answer that
    begins in a window's last context token gets its start on the closing special token
    (the scan does not stop at the context's end), and one that begins in a bare "▁"
    token can end before its start (the "▁" shares the offsets of the next character)."""
    starts, ends = [], []
    for ids, start, end in zip(
        theirs["input_ids"], theirs["start_positions"], theirs["end_positions"], strict=True
    ):
        while start > 0 and ids[start] in special_ids:
            start -= 1
        starts.append(start)
        ends.append(max(start, end))
    return starts, ends


def check_same_windows(
    ours: datasets.Dataset, theirs: datasets.Dataset, training: bool, special_ids: set[int]
) -> None:
    """The recipe (dynamic padding) and xstilts under ``overlap`` make the same windows."""
    assert ours["input_ids"] == theirs["input_ids"], "same windows expected"
    if training:
        starts, ends = recipe_quirks_fixed(theirs, special_ids)
        assert ours["start_positions"] == starts, "same starts expected"
        assert ours["end_positions"] == ends, "same ends expected"
        return
    windows = zip(ours["context_start"], ours["context_offsets"], strict=True)
    for window, (start, flat) in enumerate(windows):
        pairs = [tuple(flat[i : i + 2]) for i in range(0, len(flat), 2)]
        expected = [tuple(o) for o in theirs["offset_mapping"][window] if o is not None]
        assert pairs == expected, f"same context offsets expected (window {window})"
        assert theirs["offset_mapping"][window][start] is not None


def measure(
    runs: dict[str, Callable[[], datasets.Dataset]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    windows: dict[str, int] = {}
    names = list(runs)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            windows[name] = len(runs[name]())
            seconds[name].append(time.perf_counter() - started)
    return seconds, windows


def report(split: str, n: int, seconds: dict[str, list[float]], windows: dict[str, int]) -> None:
    print(f"\n{split} features: {'featuriser':36} {'windows':>8} {'examples/s':>11} (min-max)")
    for name, times in seconds.items():
        speeds = [n / t for t in times]
        print(
            f"{'':17} {name:36} {windows[name]:8d} {statistics.median(speeds):11.0f} "
            f"({min(speeds):.0f}-{max(speeds):.0f})"
        )
    ours = seconds["xstilts, doc_stride_meaning overlap"]
    for other in ("HF recipe, dynamic padding", "HF recipe, padded to max length"):
        ratios = [theirs / mine for theirs, mine in zip(seconds[other], ours, strict=True)]
        print(
            f"  ratio xstilts (overlap) / {other}: {statistics.median(ratios):.2f} "
            f"(min-max {min(ratios):.2f}-{max(ratios):.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", type=Path, default=None)
    parser.add_argument("--tokenizer", default=None, help="Hub id or path; the tiny one if unset.")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--split", choices=("train", "validation", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="200 questions, 2 rounds")
    args = parser.parse_args()
    files = args.files or sorted(REAL.glob("xquad.*.json"))
    if args.quick:
        files, args.rounds = files[:1], 2

    datasets.disable_caching()
    datasets.disable_progress_bars()
    if args.tokenizer is None:
        tokenizer = load_tokenizer(ModelConfig(tiny=TinyModelConfig()))
    else:
        tokenizer = load_tokenizer(ModelConfig(name=args.tokenizer))
    rows = load_rows(files, 200 if args.quick else None)
    print(
        f"{len(rows)} questions from {len(files)} file(s), max length {args.max_length}, "
        f"doc_stride {args.stride}, {args.rounds} interleaved rounds, median (min-max)"
    )
    splits = {"train": [True], "validation": [False], "both": [True, False]}[args.split]
    for training in splits:
        runs = featurisers(rows, tokenizer, args, training)
        check_same_windows(
            runs["xstilts, doc_stride_meaning overlap"](),
            runs["HF recipe, dynamic padding"](),
            training,
            set(tokenizer.all_special_ids),
        )
        seconds, windows = measure(runs, args.rounds)
        report("training" if training else "validation", len(rows), seconds, windows)


if __name__ == "__main__":
    main()
