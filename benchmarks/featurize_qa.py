"""Featurise SQuAD-format QA data with xstilts and with the Hugging Face recipe; print ratios.

The usual alternative is the recipe of the Hugging Face question-answering
example (run_qa.py, ``prepare_train_features``): a fast tokenizer with
``return_overflowing_tokens`` and ``return_offsets_mapping``, answer positions
found by walking the offsets, applied with batched ``datasets.map`` and, as the
example does by default, padded to the maximum length. It is rewritten here
from its description so that both sides run on the same tokenizer and rows.
Both sides here make training features: xstilts's carry the answer positions,
unpadded token ids and no attention mask (the collator makes it); the recipe's
carry the same positions, an attention mask and, by default, padding.

    python benchmarks/featurize_qa.py [--files a.json b.json] [--tokenizer NAME_OR_PATH]

Defaults: the four real XQuAD files shipped in xstilts (resources/real/xquad) and the
shipped tiny tokenizer (a SentencePiece Unigram model like XLM-R's).
"""

from __future__ import annotations

import argparse
import time
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


def load_rows(files: list[Path]) -> datasets.Dataset:
    rows = []
    for path in files:
        for _, row in read_squad(path):
            answers = row["answers"]
            rows.append(
                {
                    "id": row["id"],
                    "question": row["question"],
                    "context": row["context"],
                    "answers": [
                        {"text": a["text"], "answer_start": a["answer_start"]} for a in answers
                    ],
                }
            )
    return datasets.Dataset.from_list(rows)


def hf_recipe(examples, tokenizer, max_length: int, stride: int, padding: str | bool):
    """prepare_train_features of the Hugging Face QA example."""
    questions = [q.lstrip() for q in examples["question"]]
    tokenized = tokenizer(
        questions,
        examples["context"],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )
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


def best_time(function, repeats: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = len(function())
        best = min(best, time.perf_counter() - started)
    return best, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", type=Path, default=sorted(REAL.glob("xquad.*.json")))
    parser.add_argument("--tokenizer", default=None, help="Hub id or path; the tiny one if unset.")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    datasets.disable_caching()
    datasets.disable_progress_bars()
    if args.tokenizer is None:
        tokenizer = load_tokenizer(ModelConfig(tiny=TinyModelConfig()))
    else:
        tokenizer = load_tokenizer(ModelConfig(name=args.tokenizer))
    rows = load_rows(args.files)
    spec = TaskSpec(
        name="bench",
        family="qa",
        format="span_qa",
        metric="squad",
        options={"doc_stride": args.stride},
    )
    fmt = SpanQA()
    columns = rows.column_names

    def ours():
        encode = partial(
            fmt.encode, tokenizer=tokenizer, spec=spec, max_length=args.max_length, training=True
        )
        return rows.map(encode, batched=True, with_indices=True, remove_columns=columns)

    def theirs(padding):
        recipe = partial(
            hf_recipe,
            tokenizer=tokenizer,
            max_length=args.max_length,
            stride=args.stride,
            padding=padding,
        )
        return lambda: rows.map(recipe, batched=True, remove_columns=columns)

    ours_time, ours_features = best_time(ours, args.repeats)
    padded_time, padded_features = best_time(theirs("max_length"), args.repeats)
    dynamic_time, dynamic_features = best_time(theirs(False), args.repeats)
    assert ours_features == padded_features == dynamic_features, "same windows expected"

    n = len(rows)
    print(
        f"{n} questions from {len(args.files)} files -> {ours_features} windows "
        f"(max length {args.max_length}, stride {args.stride}), best of {args.repeats}"
    )
    print(f"{'featuriser':52} {'examples/s':>12}")
    results = [
        ("xstilts SpanQA.encode (training features)", ours_time),
        ("HF recipe, padding to max length (its default)", padded_time),
        ("HF recipe, no padding", dynamic_time),
    ]
    for name, seconds in results:
        print(f"{name:52} {n / seconds:12.0f}")
    print(f"ratio xstilts / HF recipe (default padding): {padded_time / ours_time:.2f}")
    print(f"ratio xstilts / HF recipe (no padding):      {dynamic_time / ours_time:.2f}")


if __name__ == "__main__":
    main()
