"""Evaluation in length order: the same outputs and predictions as in feature order,
on real samples (XQuAD questions with their sentences, UD English sentences)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from xstilts.features import feature_lengths
from xstilts.formats import get_format
from xstilts.inference import inference_order, run_inference
from xstilts.modeling import MultiTaskModel
from xstilts.tasks import load_registry
from xstilts.tasks.loading import load_split

EXAMPLES = 48


def _evaluation_set(task: str, stand_ins: tuple[Path, Path], tokenizer):
    data_dir, task_file = stand_ins
    spec = load_registry([task_file]).get(task)
    fmt = get_format(spec.format)
    loaded = load_split(
        spec,
        "validation",
        "en",
        fields=fmt.fields,
        check_row=fmt.check_row(spec),
        mode="local",
        data_dir=data_dir,
        max_examples=EXAMPLES,
    )
    encode = partial(fmt.encode, tokenizer=tokenizer, spec=spec, max_length=48)
    examples = loaded.examples
    features = examples.map(
        encode, batched=True, with_indices=True, remove_columns=examples.column_names
    )
    return spec, fmt, examples, features


def _same_rows(sorted_row: dict[str, np.ndarray], plain_row: dict[str, np.ndarray]) -> None:
    """Equal up to padding: a per-token output is compared on the shorter padded length
    (both cover every real token)."""
    assert sorted_row.keys() == plain_row.keys()
    for key, a in sorted_row.items():
        b = plain_row[key]
        if a.shape != b.shape:
            length = min(a.shape[0], b.shape[0])
            a, b = a[:length], b[:length]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("task", ["xquad_qnli", "ud_pos", "xquad_sentences"])
def test_length_ordered_evaluation_predicts_as_feature_order(
    task: str, stand_ins, tokenizer, encoder
) -> None:
    datasets.disable_progress_bars()
    spec, fmt, examples, features = _evaluation_set(task, stand_ins, tokenizer)
    order = inference_order(features)
    lengths = feature_lengths(features)
    assert len(set(lengths.tolist())) > 5, "the test needs features of varied lengths"
    assert (np.diff(lengths[order]) <= 0).all() and sorted(order) == list(range(len(features)))
    assert order.tolist() != list(range(len(features)))

    torch.manual_seed(0)
    model = MultiTaskModel(
        encoder, {spec.head_name: fmt.build_head(spec, encoder)}, {spec.head_name: fmt}
    )
    run = partial(
        run_inference,
        model,
        spec.head_name,
        fmt,
        features,
        batch_size=8,
        pad_token_id=tokenizer.pad_token_id,
        device=torch.device("cpu"),
    )
    ordered, plain = run(sort_by_length=True), run(sort_by_length=False)
    assert len(ordered) == len(plain) == len(features)
    for sorted_row, plain_row in zip(ordered, plain, strict=True):
        _same_rows(sorted_row, plain_row)
    predictions = fmt.predict(spec, examples, features, ordered)
    assert predictions == fmt.predict(spec, examples, features, plain)
    assert fmt.score(spec, examples, predictions) == fmt.score(
        spec, examples, fmt.predict(spec, examples, features, plain)
    )


def test_feature_lengths_of_nested_sequences_are_the_longest_choice() -> None:
    features = datasets.Dataset.from_dict(
        {"input_ids": [[[1, 2, 3], [1]], [[1], [1, 2]], [[5], [6]]]}
    )
    assert feature_lengths(features).tolist() == [3, 2, 1]
    flat = datasets.Dataset.from_dict({"input_ids": [[1, 2], [1, 2, 3, 4], [1]]})
    assert feature_lengths(flat.select([2, 0, 1])).tolist() == [1, 2, 4]
