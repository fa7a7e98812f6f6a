"""Examples -> features through a format, cached on disk as Arrow tables."""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from xstilts.formats import TaskFormat
from xstilts.io import published_once
from xstilts.tasks.loading import LoadedSplit
from xstilts.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides how the tokenizer splits text."""
    cached = getattr(tokenizer, "_xstilts_fingerprint", None)
    if cached is None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        text = backend.to_str() if backend is not None else repr(tokenizer.get_vocab())
        cached = hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()[:16]
        tokenizer._xstilts_fingerprint = cached
    return cached


def encode_split(
    loaded: LoadedSplit,
    fmt: TaskFormat,
    spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: Path,
) -> datasets.Dataset:
    """Features of one split; a second call with the same inputs reads them from disk."""
    key_parts = [
        loaded.fingerprint,
        fmt.name,
        fmt.version,
        tokenizer_fingerprint(tokenizer),
        str(max_length),
        loaded.split,
        spec.model_dump_json(include={"labels", "format", "options"}),
    ]
    key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:20]
    target = cache_dir / "features" / f"{spec.name}-{loaded.split}-{loaded.language}-{key}"
    if target.is_dir():
        log.debug(
            "features of %s/%s/%s from cache %s", spec.name, loaded.split, loaded.language, target
        )
        return datasets.load_from_disk(str(target))
    encode = partial(
        fmt.encode,
        tokenizer=tokenizer,
        spec=spec,
        max_length=max_length,
        training=loaded.split == "train",
    )
    features = loaded.examples.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=loaded.examples.column_names,
        new_fingerprint=key,
        desc=f"tokenising {spec.name}/{loaded.split}/{loaded.language}",
    )
    progress_was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # saving is quick; its bar is noise
    try:
        with published_once(target) as scratch:
            features.save_to_disk(str(scratch))
    finally:
        if progress_was_on:
            datasets.enable_progress_bars()
    return datasets.load_from_disk(str(target))


def feature_lengths(features: datasets.Dataset, column: str = "input_ids") -> np.ndarray:
    """Tokens of each feature: its sequence's length, or for a feature of several
    sequences (multiple choice) the longest one's, which is what it pads to."""
    values = features.with_format("arrow")[column]
    if isinstance(values, pa.Table):
        values = values.column(0)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_list(values.type.value_type) or pa.types.is_large_list(values.type.value_type):
        inner = _lengths(pc.list_flatten(values))
        parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
        lengths = np.zeros(len(values), dtype=np.int64)
        np.maximum.at(lengths, parents, inner)
        return lengths
    return _lengths(values)


def _lengths(values: pa.Array) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(values), 0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64)
