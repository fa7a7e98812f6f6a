"""Readers for local files in the formats the original distributions use.

Each reader yields ``(line, row)``: the 1-based line where the row starts (for
error messages) and the row as a dict of column name -> value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from xstilts.errors import XstiltsError

Row = dict[str, object]
Reader = Callable[..., Iterator[tuple[int | str, Row]]]
"""Yields (line number in the file, or a full location string; row)."""

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".tsv": "tsv",
    ".csv": "csv",
    ".parquet": "parquet",
    ".conllu": "conllu",
    ".conll": "conll",
    ".txt": "text",
}


def infer_file_format(path: Path) -> str:
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise XstiltsError(
            f"{path}: cannot tell the file format from the suffix {path.suffix!r}; "
            f"use one of {known} or set 'file_format' in the task's data source"
        )
    return fmt


def read_jsonl(path: Path, **_: object) -> Iterator[tuple[int, Row]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise XstiltsError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise XstiltsError(f"{path}:{line_no}: expected a JSON object per line")
            yield line_no, row


def read_jsonl_with_labels(
    path: Path, companions: dict[str, Path] | None = None, **_: object
) -> Iterator[tuple[int, Row]]:
    """JSON lines whose gold labels sit in a separate file, one per line in the same
    order (the ``labels`` companion), as the Social IQa and aNLI releases ship them
    (``train.jsonl`` + ``train-labels.lst``); the label becomes the row's ``label``."""
    labels_path = _companion(path, companions, "labels")
    labels = [line.strip() for line in _lines(labels_path) if line.strip()]
    rows = list(read_jsonl(path))
    if len(labels) != len(rows):
        raise XstiltsError(
            f"{labels_path} holds {len(labels)} labels but {path} has {len(rows)} rows; "
            "expected one label per row, in the same order"
        )
    for (line_no, row), label in zip(rows, labels, strict=True):
        row["label"] = label
        yield line_no, row


def read_json(path: Path, **_: object) -> Iterator[tuple[int, Row]]:
    """A JSON array of objects, or an object whose ``data`` key holds one."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise XstiltsError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    if not isinstance(payload, list):
        raise XstiltsError(f"{path}: expected a JSON array of objects (or {{'data': [...]}})")
    for index, row in enumerate(payload):
        if not isinstance(row, dict):
            raise XstiltsError(f"{path}: item {index} is not a JSON object")
        yield index + 1, row


def _read_delimited(
    path: Path,
    delimiter: str,
    quoting: int,
    header: bool,
    column_names: list[str] | None,
    min_columns: int | None,
) -> Iterator[tuple[int, Row]]:
    """Rows of a delimited file; with ``min_columns``, trailing columns may be absent
    (XTREME's test TSVs carry a label column or not)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        names = column_names
        if header:
            first = next(reader, None)
            if first is None:
                return
            names = names or first
        if names is None:
            raise XstiltsError(f"{path}: no header line; set 'column_names' in the data source")
        start = reader.line_num + 1
        for values in reader:
            line_no, start = start, reader.line_num + 1
            if not values or values == [""]:
                continue
            fewest = len(names) if min_columns is None else min_columns
            if not fewest <= len(values) <= len(names):
                expected = f"{fewest} to {len(names)}" if fewest < len(names) else len(names)
                raise XstiltsError(
                    f"{path}:{line_no}: expected {expected} fields "
                    f"({', '.join(names)}), found {len(values)}"
                )
            yield line_no, dict(zip(names, values, strict=False))


def read_tsv(
    path: Path,
    header: bool = True,
    column_names: list[str] | None = None,
    min_columns: int | None = None,
    **_: object,
) -> Iterator[tuple[int, Row]]:
    # The XTREME TSVs contain bare quote characters inside sentences: no quoting.
    return _read_delimited(path, "\t", csv.QUOTE_NONE, header, column_names, min_columns)


def read_csv(
    path: Path,
    header: bool = True,
    column_names: list[str] | None = None,
    min_columns: int | None = None,
    **_: object,
) -> Iterator[tuple[int, Row]]:
    return _read_delimited(path, ",", csv.QUOTE_MINIMAL, header, column_names, min_columns)


def read_parquet(path: Path, **_: object) -> Iterator[tuple[int, Row]]:
    import pyarrow.parquet as pq

    for index, row in enumerate(pq.read_table(path).to_pylist()):
        yield index + 1, row


def read_text(path: Path, **_: object) -> Iterator[tuple[int, Row]]:
    """Plain text, one sentence per line (masked-LM corpora); blank lines are skipped.

    Streamed, and split at newlines only (as ``_lines``), so large corpora stay cheap.
    """
    with path.open(encoding="utf-8", newline="\n") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield line_no, {"text": text}


READERS: dict[str, Reader] = {
    "jsonl": read_jsonl,
    "json": read_json,
    "tsv": read_tsv,
    "csv": read_csv,
    "parquet": read_parquet,
    "text": read_text,
}


# ---------------------------------------------------------------------------
# The formats of the original benchmark distributions. These readers may yield
# a full location string instead of a line number where a line means nothing.


def squad_articles(path: Path) -> list[dict]:
    """The ``data`` list of a SQuAD-format JSON file, or one clear error."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise XstiltsError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise XstiltsError(f"{path}: expected SQuAD JSON, an object with a 'data' list")
    return payload["data"]


def read_squad(path: Path, **_: object) -> Iterator[tuple[int | str, Row]]:
    """SQuAD-format JSON (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP): one row per question."""
    articles = squad_articles(path)
    try:
        yield from _squad_rows(path, articles)
    except KeyError as missing:
        raise XstiltsError(f"{path}: a paragraph or question has no {missing} key") from None


def _squad_rows(path: Path, articles: list) -> Iterator[tuple[int | str, Row]]:
    for article in articles:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                row = {
                    "id": qa["id"],
                    "title": article.get("title", ""),
                    "context": context,
                    "question": qa["question"],
                    "answers": qa.get("answers", []),
                    "is_impossible": bool(qa.get("is_impossible", False)),
                }
                yield f"{path} (question {qa['id']})", row


def read_conll(
    path: Path, token_prefix: str | None = None, **_: object
) -> Iterator[tuple[int | str, Row]]:
    """``token<TAB>label`` lines, a blank line between sentences (PAN-X, preprocessed UD).

    ``token_prefix`` (PAN-X's raw files write ``en:Paris``) is removed where present.
    A sentence without labels is unlabelled (``tags`` is None).
    """
    for start, lines in _blocks(path):
        tokens: list[str] = []
        tags: list[str] = []
        for line in lines:
            fields = line.split("\t") if "\t" in line else line.split()
            token = fields[0]
            if token_prefix and token.startswith(token_prefix):
                token = token[len(token_prefix) :]
            tokens.append(token)
            if len(fields) > 1:
                tags.append(fields[-1])
        if tags and len(tags) != len(tokens):
            raise XstiltsError(f"{path}:{start}: some tokens of this sentence have no label")
        yield start, {"tokens": tokens, "tags": tags or None}


CONLLU_COLUMNS = {"upos": 3, "xpos": 4}


def read_conllu(
    path: Path, tag_column: str = "upos", **_: object
) -> Iterator[tuple[int | str, Row]]:
    """CoNLL-U treebanks: FORM and UPOS of each word. Multiword-token ranges and
    empty nodes (ids with '-' or '.') are skipped, as XTREME's UD preprocessing does."""
    column = CONLLU_COLUMNS[tag_column]
    for start, lines in _blocks(path):
        sent_id = None
        tokens: list[str] = []
        tags: list[str] = []
        for offset, line in enumerate(lines):
            if line.startswith("#"):
                if line.startswith("# sent_id"):
                    sent_id = line.split("=", 1)[-1].strip()
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                where = f"{path}:{start + offset}"
                raise XstiltsError(f"{where}: expected 10 tab-separated CoNLL-U fields")
            if "-" in fields[0] or "." in fields[0]:
                continue
            tokens.append(fields[1])
            tags.append(fields[column])
        if tokens:
            yield start, {"id": sent_id, "tokens": tokens, "tags": tags}


def _blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Runs of non-blank lines with the line number where each starts."""
    lines: list[str] = []
    start = 0
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if line.strip():
                if not lines:
                    start = line_no
                lines.append(line)
            elif lines:
                yield start, lines
                lines = []
    if lines:
        yield start, lines


def read_tatoeba(
    path: Path, companions: dict[str, Path] | None = None, **_: object
) -> Iterator[tuple[int | str, Row]]:
    """Line-aligned ``tatoeba.xxx-eng.xxx`` / ``tatoeba.xxx-eng.eng``: line i translates line i.

    Rows are sentences: sources carry the id of their gold English sentence.
    """
    target_path = _companion(path, companions, "target")
    sources = _lines(path)
    targets = _lines(target_path)
    if len(sources) != len(targets):
        raise XstiltsError(
            f"{path} has {len(sources)} lines but {target_path} has {len(targets)}; "
            "Tatoeba files must be line-aligned"
        )
    for index, text in enumerate(sources):
        yield index + 1, {"side": "source", "id": str(index), "text": text, "gold": str(index)}
    for index, text in enumerate(targets):
        row = {"side": "target", "id": str(index), "text": text, "gold": ""}
        yield f"{target_path}:{index + 1}", row


def read_bucc(
    path: Path, companions: dict[str, Path] | None = None, **_: object
) -> Iterator[tuple[int | str, Row]]:
    """BUCC 2018 ``id<TAB>sentence`` files for both languages, plus the gold pairs if given."""
    target_path = _companion(path, companions, "target")
    gold_path = (companions or {}).get("gold")
    gold: dict[str, str] = {}
    if gold_path is not None and gold_path.is_file():
        for line_no, (src, tgt) in _id_pairs(gold_path):
            if src in gold:
                raise XstiltsError(f"{gold_path}:{line_no}: source {src} has two gold pairs")
            gold[src] = tgt
    for line_no, (sid, text) in _id_pairs(path):
        yield line_no, {"side": "source", "id": sid, "text": text, "gold": gold.get(sid, "")}
    for line_no, (tid, text) in _id_pairs(target_path):
        yield f"{target_path}:{line_no}", {"side": "target", "id": tid, "text": text, "gold": ""}


def _lines(path: Path) -> list[str]:
    """Lines split at newlines only: str.splitlines would also split inside a sentence
    at U+2028, U+0085 or form feeds, breaking the alignment of parallel files."""
    with path.open(encoding="utf-8", newline="\n") as handle:
        return [line.rstrip("\r\n") for line in handle]


def _id_pairs(path: Path) -> Iterator[tuple[int, tuple[str, str]]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if not line:
                continue
            first, sep, second = line.partition("\t")
            if not sep:
                raise XstiltsError(f"{path}:{line_no}: expected 'id<TAB>text'")
            yield line_no, (first, second)


def _companion(path: Path, companions: dict[str, Path] | None, role: str) -> Path:
    found = (companions or {}).get(role)
    if found is None:
        raise XstiltsError(f"{path}: this format needs a '{role}' file under 'companions'")
    if not found.is_file():
        raise XstiltsError(f"{found}: data file not found (the '{role}' file of {path})")
    return found


READERS.update(
    {
        "jsonl_labels": read_jsonl_with_labels,
        "squad": read_squad,
        "conll": read_conll,
        "conllu": read_conllu,
        "tatoeba": read_tatoeba,
        "bucc": read_bucc,
    }
)
from xstilts.tasks import readers_retrieval  # noqa: E402, F401  (registers the retrieval readers)
