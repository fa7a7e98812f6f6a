"""Prediction and label folders in the XTREME submission layout.

A submission (and its label folder, which has the same shape) holds one sub-folder per
task and, in it, one file per language named ``test-{lang}.{ext}``. File names, formats
and readers follow ``evaluate.py`` of google-research/xtreme (commit 838c13b, the
version that scores both XTREME and XTREME-R):

========================  =====  ==================================================
task                      ext    content of a prediction file and of a label file
========================  =====  ==================================================
xnli, pawsx, tatoeba      tsv    one label per line (tatoeba: the index of the
                                 retrieved English sentence); ``read_label``
udpos, panx               tsv    one tag per line, a blank line ends a sentence;
                                 ``read_tag``
bucc2018                  tsv    one ``src_id<TAB>tgt_id`` pair per line (the gold
                                 pairs, or the already thresholded predicted pairs)
xquad, mlqa, tydiqa       json   predictions ``{question_id: answer}``; labels the
                                 SQuAD v1.1 dataset file; ``read_squad``
mewslix                   json   predictions ``{example_id: [entity ids, best
                                 first]}``; labels ``{example_id: [gold entity id]}``
lareqa                    json   as mewslix: ``{question_id: [answer ids, best
                                 first]}`` and ``{question_id: [relevant ids]}``
xcopa                     jsonl  one JSON object per line with its ``"label"``
========================  =====  ==================================================

Readers reproduce the official ones exactly: every line is ``str.strip``-ped, a
label file keeps its blank lines as empty labels (so a trailing blank line counts as an
example), every blank line in a tag file ends a sentence (two blank lines in a row make
an empty sentence), and a JSON file holding a ``"data"`` key is read as that value.

Two departures, both where the official script has nothing sensible to do: the official
script gives lareqa no file format (its language list is empty, so it never opens a
file; its generic rule would make the extension ``tsv``), and crashes on a blank line of
an xcopa ``jsonl`` file; blank lines there are skipped.

Checks (each raises ``XstiltsError`` with one sentence naming the file): a missing file;
an unreadable or ill-formed one; predictions and labels that differ in their number of
lines (classification, tatoeba, xcopa), sentences or tags in a sentence (udpos, panx),
as the official script asserts; and, only when ``strict`` (the default), questions or
queries (QA, mewslix, lareqa), which the official script does not check: it scores an
unanswered question 0 and ignores answers to unknown ids (``strict=False``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.metrics._qa import iter_questions

LINE_TASKS = frozenset({"xnli", "pawsx", "tatoeba", "bucc2018"})
TAG_TASKS = frozenset({"udpos", "panx"})
QA_TASKS = frozenset({"xquad", "mlqa", "tydiqa"})
RANKING_TASKS = frozenset({"mewslix", "lareqa"})
JSONL_TASKS = frozenset({"xcopa"})
KNOWN_TASKS = LINE_TASKS | TAG_TASKS | QA_TASKS | RANKING_TASKS | JSONL_TASKS

SUFFIXES: dict[str, str] = {
    **{task: "tsv" for task in LINE_TASKS | TAG_TASKS},
    **{task: "json" for task in QA_TASKS | RANKING_TASKS},
    **{task: "jsonl" for task in JSONL_TASKS},
}


def submission_suffix(task: str) -> str:
    """The file extension of a task's prediction and label files."""
    try:
        return SUFFIXES[task]
    except KeyError:
        raise XstiltsError(
            f"'{task}' is not an XTREME or XTREME-R task; known tasks: "
            f"{', '.join(sorted(KNOWN_TASKS))}"
        ) from None


def submission_file(folder: Path, task: str, language: str) -> Path:
    """``folder/<task>/test-<language>.<ext>``, the name the official script opens."""
    return Path(folder) / task / f"test-{language}.{submission_suffix(task)}"


def task_folders(folder: Path, role: str = "submission") -> set[str]:
    """Names of the sub-folders of ``folder`` (the official script's ``os.walk`` step)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise XstiltsError(f"the {role} folder {folder} does not exist or is not a folder")
    return {child.name for child in folder.iterdir() if child.is_dir()}


# -- readers ------------------------------------------------------------------------


def _open(path: Path):
    try:
        return path.open(encoding="utf-8")
    except OSError as error:
        raise XstiltsError(f"cannot read {path}: {error.strerror or error}") from None


def _decoded(path: Path, read):
    try:
        return read()
    except UnicodeDecodeError as error:
        raise XstiltsError(f"{path} is not UTF-8 text ({error.reason})") from None


def read_lines(path: Path) -> list[str]:
    """Every line, stripped; blank lines stay as empty strings (official ``read_label``)."""
    path = Path(path)
    with _open(path) as handle:
        return _decoded(path, lambda: [line.strip() for line in handle])


def read_tag_sentences(path: Path) -> list[list[str]]:
    """Sentences of stripped tags; each blank line ends one (official ``read_tag``)."""
    path = Path(path)

    def read() -> list[list[str]]:
        sentences: list[list[str]] = []
        current: list[str] = []
        for raw in handle:
            line = raw.strip()
            if line:
                current.append(line)
            else:
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
        return sentences

    with _open(path) as handle:
        return _decoded(path, read)


def read_json(path: Path) -> Any:
    """The file's JSON value, or its ``"data"`` member if it has one (``read_squad``)."""
    path = Path(path)
    with _open(path) as handle:
        try:
            value = _decoded(path, lambda: json.load(handle))
        except json.JSONDecodeError as error:
            raise XstiltsError(
                f"{path} is not valid JSON ({error.msg} at line {error.lineno})"
            ) from None
    if isinstance(value, dict) and "data" in value:
        return value["data"]
    return value


def read_jsonl_labels(path: Path) -> list[Any]:
    """The ``"label"`` of each JSON line; blank lines are skipped (``read_xcopa``)."""
    path = Path(path)

    def read() -> list[Any]:
        labels: list[Any] = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise XstiltsError(
                    f"{path} line {number} is not valid JSON ({error.msg})"
                ) from None
            if not isinstance(row, dict) or "label" not in row:
                raise XstiltsError(f"{path} line {number} is not a JSON object with a 'label'")
            labels.append(row["label"])
        return labels

    with _open(path) as handle:
        return _decoded(path, read)


def read_task_file(task: str, path: Path) -> Any:
    """A prediction or label file of ``task``, read as the official script reads it."""
    submission_suffix(task)
    if task in LINE_TASKS:
        return read_lines(path)
    if task in TAG_TASKS:
        return read_tag_sentences(path)
    if task in JSONL_TASKS:
        return read_jsonl_labels(path)
    return read_json(path)


# -- one language of one task -----------------------------------------------------


@dataclass(frozen=True)
class LanguageFiles:
    """The parsed prediction and label files of one language of one task."""

    task: str
    language: str
    prediction_file: Path
    label_file: Path
    predictions: Any
    labels: Any


def read_language(
    predictions_dir: Path,
    labels_dir: Path,
    task: str,
    language: str,
    *,
    strict: bool = True,
) -> LanguageFiles:
    """Read and check the prediction and label files of ``task`` in ``language``."""
    prediction_file = submission_file(predictions_dir, task, language)
    label_file = submission_file(labels_dir, task, language)
    if not prediction_file.is_file():
        raise XstiltsError(
            f"the prediction file {prediction_file} is missing: a {task} folder must hold "
            f"test-{{lang}}.{submission_suffix(task)} for every {task} language"
        )
    if not label_file.is_file():
        raise XstiltsError(f"the label file {label_file} is missing")
    predictions = read_task_file(task, prediction_file)
    labels = read_task_file(task, label_file)
    files = LanguageFiles(task, language, prediction_file, label_file, predictions, labels)
    if task in TAG_TASKS:
        _check_sentences(files)
    elif task in QA_TASKS:
        _check_questions(files, strict)
    elif task in RANKING_TASKS:
        _check_rankings(files, strict)
    elif task != "bucc2018":
        _check_count(files, len(predictions), len(labels), "lines")
    return files


def _check_count(files: LanguageFiles, predicted: int, gold: int, unit: str) -> None:
    if predicted != gold:
        raise XstiltsError(
            f"{files.prediction_file} has {predicted} {unit} but {files.label_file} has {gold}"
        )


def _check_sentences(files: LanguageFiles) -> None:
    _check_count(files, len(files.predictions), len(files.labels), "sentences")
    for index, (predicted, gold) in enumerate(zip(files.predictions, files.labels, strict=True)):
        if len(predicted) != len(gold):
            raise XstiltsError(
                f"sentence {index + 1} of {files.prediction_file} has {len(predicted)} tags "
                f"but sentence {index + 1} of {files.label_file} has {len(gold)}"
            )


def _string_map(path: Path, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise XstiltsError(f"{path} must hold a JSON object mapping ids to {what}")
    return value


def _check_ids(
    files: LanguageFiles, predicted: Mapping[str, Any], gold: list[str], unit: str
) -> None:
    _check_count(files, len(predicted), len(gold), unit)
    known = set(gold)
    unknown = [key for key in predicted if key not in known]
    if unknown:
        raise XstiltsError(
            f"{files.prediction_file} has {len(unknown)} {unit} (e.g. '{unknown[0]}') that "
            f"{files.label_file} does not have"
        )


def _check_questions(files: LanguageFiles, strict: bool) -> None:
    predictions = _string_map(files.prediction_file, files.predictions, "answer strings")
    for key, answer in predictions.items():
        if not isinstance(answer, str):
            raise XstiltsError(f"{files.prediction_file}: the answer to '{key}' is not a string")
    try:
        gold_ids = [question["id"] for question in iter_questions(files.labels)]
        for question in iter_questions(files.labels):
            for answer in question["answers"]:
                if not isinstance(answer["text"], str):
                    raise TypeError
    except (KeyError, TypeError):
        raise XstiltsError(
            f"{files.label_file} is not a SQuAD v1.1 dataset (data -> paragraphs -> qas "
            f"-> answers -> text)"
        ) from None
    if strict:  # a question listed twice in the labels is still one question
        _check_ids(files, predictions, list(dict.fromkeys(gold_ids)), "questions")


def _ranking_map(path: Path, value: Any, what: str) -> Mapping[str, list[str]]:
    mapping = _string_map(path, value, what)
    for key, items in mapping.items():
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise XstiltsError(f"{path}: the value of '{key}' is not a list of {what}")
    return mapping


def _check_rankings(files: LanguageFiles, strict: bool) -> None:
    predictions = _ranking_map(files.prediction_file, files.predictions, "id strings")
    labels = _ranking_map(files.label_file, files.labels, "id strings")
    for key, items in labels.items():
        if not items:
            raise XstiltsError(f"{files.label_file}: '{key}' has no gold id")
    if strict:
        _check_ids(files, predictions, list(labels), "queries")
