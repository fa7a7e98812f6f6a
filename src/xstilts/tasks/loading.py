"""Turn a task's data sources into a table of examples with the format's field names."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from xstilts.errors import XstiltsError
from xstilts.io import first_non_utf8_line, not_utf8_message, read_utf8
from xstilts.tasks.readers import READERS, Row, infer_file_format
from xstilts.tasks.spec import DataSource, SourceMode, SplitName, TaskSpec

log = logging.getLogger(__name__)

RowCheck = Callable[[dict[str, object]], dict[str, object]]
"""Format-provided: validates and normalises one example (labels above all).

Raises ValueError with a short reason; the loader adds where the row came from.
"""
LabelCheck = Callable[[dict[str, object]], bool]
"""Format-provided: whether a checked example has its gold label."""
Subsample = Callable[[datasets.Dataset, int, int], datasets.Dataset]
"""Format-provided: at most n of the examples, chosen with a seed."""


def random_subsample(examples: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
    """At most ``size`` examples, drawn with ``seed``: the default ``Subsample``."""
    if len(examples) <= size:
        return examples
    return examples.shuffle(seed=seed).select(range(size))


ID_FIELD = "id"


@dataclass(frozen=True)
class FieldSpec:
    """The fields a format reads from each example."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.required, *self.optional, ID_FIELD)


@dataclass
class LoadedSplit:
    task: str
    split: SplitName
    language: str
    examples: datasets.Dataset
    fingerprint: str
    dropped: int


def load_split(
    spec: TaskSpec,
    split: SplitName,
    lang: str,
    *,
    fields: FieldSpec,
    check_row: RowCheck,
    labelled: LabelCheck | None = None,
    subsample: Subsample = random_subsample,
    mode: SourceMode = "hub",
    data_dir: Path | None = None,
    max_examples: int | None = None,
    subsample_seed: int = 0,
) -> LoadedSplit:
    """Read, validate and normalise one split of one task in one language.

    With ``labelled``, every example must have its gold label: one without is an
    error naming its file and line, unless its source lists the raw value in
    ``drop_labels`` (then it is dropped and counted)."""
    where = f"task '{spec.name}', split '{split}', language '{lang}'"
    sources = spec.sources(split, lang, mode)
    if not sources:
        raise XstiltsError(f"{where}: the task spec ({spec.origin}) names no data source for it")
    rows: list[dict[str, object]] = []
    dropped = 0
    digests = []
    for source in sources:
        found, lost, digest = _read_source(
            spec, source, where, fields, check_row, labelled, data_dir
        )
        rows.extend(found)
        dropped += lost
        digests.append(digest)
    if dropped:
        log.info("%s: dropped %d examples without a gold label", where, dropped)
    if not rows:
        described = "; ".join(s.describe() for s in sources)
        raise XstiltsError(f"{where} is empty: no examples in {described}")
    examples = datasets.Dataset.from_list(rows)
    if max_examples is not None and len(examples) > max_examples:
        examples = subsample(examples, max_examples, subsample_seed)
        digests.append(f"subsample={max_examples}@{subsample_seed}")
    fingerprint = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
    return LoadedSplit(spec.name, split, lang, examples, fingerprint, dropped)


def _read_source(
    spec: TaskSpec,
    source: DataSource,
    where: str,
    fields: FieldSpec,
    check_row: RowCheck,
    labelled: LabelCheck | None,
    data_dir: Path | None,
) -> tuple[list[dict[str, object]], int, str]:
    if source.hub is not None:
        located, digest = _hub_rows(source, where)
    else:
        located, digest = _local_rows(spec, source, where, data_dir)
    label_column = source.columns.get("label", "label")
    drop = set(source.drop_labels)
    keep = {column: re.compile(pattern) for column, pattern in source.where.items()}
    examples: list[dict[str, object]] = []
    dropped = 0
    id_column = source.columns.get(ID_FIELD, ID_FIELD)
    for index, (location, row) in enumerate(located):
        if keep and not all(
            pattern.search(str(_raw_value(row, column))) for column, pattern in keep.items()
        ):
            continue
        if source.holdout is not None:
            # The same id as the example gets below: its own, else its position.
            raw_id = _raw_value(row, id_column) if isinstance(id_column, str) else None
            if not source.holdout.keeps(raw_id or str(index)):
                continue
        if drop and isinstance(label_column, str) and _raw_value(row, label_column) in drop:
            dropped += 1
            continue
        try:
            example = _extract(row, source, fields)
            example = check_row(example)
        except ValueError as err:
            raise XstiltsError(f"{location}: {err} (task '{spec.name}')") from None
        if labelled is not None and not labelled(example):
            raw = _raw_value(row, label_column) if isinstance(label_column, str) else None
            raise XstiltsError(
                f"{location}: this example has no gold label (task '{spec.name}'); "
                "training and validation need one on every row (to drop such rows, "
                f"list their raw label {raw or ''!r} in the data source's drop_labels)"
            )
        example[ID_FIELD] = str(example.get(ID_FIELD) or index)
        examples.append(example)
    return examples, dropped, digest + json.dumps(source.model_dump(), sort_keys=True)


def _hub_rows(source: DataSource, where: str) -> tuple[Iterator[tuple[str, Row]], str]:
    try:
        table = datasets.load_dataset(
            source.hub, source.config, split=source.split, revision=source.revision
        )
    except Exception as err:  # the hub client raises many types; all mean "not available"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XstiltsError(
            f"{where}: cannot load {source.describe()} from the Hugging Face hub ({reason}); "
            "offline, set data.source: local and data.data_dir to a copy of the files"
        ) from None
    name = source.describe()
    rows = ((f"{name} row {i}", row) for i, row in enumerate(table))
    return rows, f"{name}@{table._fingerprint}"


def _local_rows(
    spec: TaskSpec, source: DataSource, where: str, data_dir: Path | None
) -> tuple[Iterator[tuple[str, Row]], str]:
    assert source.path is not None
    tried: list[Path] = []
    for candidate in source.path:
        for path in _candidate_paths(Path(candidate), spec, data_dir):
            tried.append(path)
            if path.is_file():
                companions = {
                    role: _companion_path(path, names) for role, names in source.companions.items()
                }
                fmt = source.file_format or infer_file_format(path)
                rows = READERS[fmt](
                    path,
                    header=source.header,
                    column_names=source.column_names,
                    companions=companions,
                    **source.reader_options,
                )
                digest = ";".join(_file_digest(p) for p in [path, *companions.values()])
                located = (
                    (f"{path}:{where}" if isinstance(where, int) else where, row)
                    for where, row in rows
                )
                return _utf8_named(located, [path, *companions.values()]), digest
    listed = ", ".join(str(p) for p in tried)
    hint = "" if data_dir else "; set data.data_dir to the folder that holds the task's files"
    raise XstiltsError(f"{where}: data file not found (looked for {listed}){hint}")


def _companion_path(path: Path, names: str | list[str]) -> Path:
    """The first candidate that exists, relative to the main file's folder (the last
    candidate if none does: the reader names it as missing)."""
    candidates = [path.parent / name for name in ([names] if isinstance(names, str) else names)]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def _utf8_named(located: Iterator[tuple[str, Row]], paths: list[Path]) -> Iterator[tuple[str, Row]]:
    """The rows, with a file that is not UTF-8 reported by name and line."""
    try:
        yield from located
    except UnicodeDecodeError as err:
        culprit = next((p for p in paths if first_non_utf8_line(p) is not None), paths[0])
        raise XstiltsError(not_utf8_message(culprit, err)) from None


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return f"{path}:absent"
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _candidate_paths(path: Path, spec: TaskSpec, data_dir: Path | None) -> list[Path]:
    if path.is_absolute():
        return [path]
    bases = [b for b in (data_dir, spec.base_dir) if b is not None]
    return [base / path for base in bases] or [path]


def _lookup(row: Row, column: str) -> object:
    """Value of ``column`` in ``row``; dots reach into nested dicts."""
    value: object = row
    for part in column.split("."):
        if isinstance(value, list) and all(isinstance(v, dict) and part in v for v in value):
            value = [v[part] for v in value]  # a list of records: take the field of each
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(column)
    return value


def _raw_value(row: Row, column: str) -> str | None:
    """The column's value as text: an empty cell and a JSON null both read as ""."""
    try:
        value = _lookup(row, column)
    except KeyError:
        return None
    return "" if value is None else str(value)


def _extract(row: Row, source: DataSource, fields: FieldSpec) -> dict[str, object]:
    example: dict[str, object] = {}
    for field in fields.all:
        column = source.columns.get(field, field)
        try:
            if isinstance(column, list):
                value: object = [_lookup(row, c) for c in column]
            else:
                value = _lookup(row, column)
        except KeyError as missing:
            if field in fields.required or field in source.columns:
                available = ", ".join(sorted(row))
                raise ValueError(
                    f"no column {missing} for field '{field}' (columns: {available}); "
                    "map it with 'columns' in the task's data source"
                ) from None
            continue
        mapping = source.value_maps.get(field)
        if mapping is not None and isinstance(value, str | int):
            value = mapping.get(str(value), value)
        if field == "label" and source.label_map:
            value = source.label_map.get(str(value), value)
        example[field] = value
    return example


def with_label_file(spec: TaskSpec, data_dir: Path | None, required: bool = True) -> TaskSpec:
    """The spec with its labels read from ``label_file`` when it names one; without
    ``required``, a missing file leaves the labels empty (planning without the data)."""
    if spec.label_file is None or spec.labels:
        return spec
    for path in _candidate_paths(Path(spec.label_file), spec, data_dir):
        if path.is_file():
            labels = [line.strip() for line in read_utf8(path).splitlines() if line.strip()]
            if not labels:
                raise XstiltsError(f"{path}: the label file of task '{spec.name}' is empty")
            return spec.model_copy(update={"labels": labels})
    if not required:
        return spec
    raise XstiltsError(
        f"task '{spec.name}': label file {spec.label_file} not found under data.data_dir"
    )
