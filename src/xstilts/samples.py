"""Small real datasets shipped with xstilts, and stand-in tasks built from them.

``resources/real`` holds unchanged copies of public benchmark files (see its README
for sources and licences): XQuAD in English, German, Chinese and Arabic; the
Universal Dependencies dev sets of English EWT and German GSD; Tatoeba pairs for five
languages; XCOPA in Estonian, Italian and Chinese. They are test sets, not training
sets, so a CPU-sized experiment needs stand-ins cut from them:

- ``xquad_sentences``: XQuAD's questions, each with the sentence that holds its
  answer as the context (paragraphs are 3x longer, too slow to train on two cores).
  Articles are split once for every language: the English questions of articles 0-29
  train, those of 30-35 validate, and articles 36-47 are the test set in every
  language. XQuAD is parallel, so no test article is ever seen in training.
- ``ud_pos``: English EWT's sentences, the first 1600 for training; the other 401
  split by a hash of their sent_id (a ``holdout`` of the task's sources) into
  validation (178) and the English test set (223), so no test sentence selects a
  checkpoint; German GSD's as the zero-shot test set.
- ``xquad_qnli``: QNLI built the way GLUE built it from SQuAD: a question with the
  sentence that answers it (entailment) or with another sentence of its paragraph
  (not_entailment), alternating; the same article splits as ``xquad_sentences``, so
  a sentence-pair classification task tested in en, de, zh and ar.
- ``xquad_qnli_multilingual``: the same pairs cut from the training articles in
  German, Chinese and Arabic (XQuAD's professional translations of the English ones),
  validated on the English pairs: the stand-in of translate-train intermediate data.
- ``tatoeba``: the shipped Tatoeba pairs, laid out for the catalog's ``tatoeba`` task.
- ``tatoeba_text``: the Tatoeba sentences of each language as plain text, for masked
  language modelling (MAD-X language adapters); never pair it with a Tatoeba target.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from xstilts.errors import XstiltsError
from xstilts.io import atomic_write_text
from xstilts.tasks import load_registry

XQUAD_LANGUAGES = ("en", "de", "zh", "ar")
XQUAD_ARTICLE_SPLITS = {"train": range(0, 30), "validation": range(30, 36), "test": range(36, 48)}
UD_ENGLISH_TRAIN_SENTENCES = 1600
UD_ENGLISH_VALIDATION_SHARE = 0.5
"""Of the English sentences after the training ones: hashed into validation, the
others into the English test set (``holdout`` in the task's sources)."""

# A sentence ends at . ! ? ; (and their CJK and Arabic forms) followed by space;
# CJK full stops need no space.
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？؟])\s+|(?<=[。！？])")
_SENTENCE_SPAN = re.compile(r"\S.*?(?:[.!?;؟](?=\s|$)|[。！？]|$)", re.S)


def real_samples() -> Path:
    """The folder of the shipped real samples."""
    with resources.as_file(resources.files("xstilts.resources") / "real") as path:
        return Path(path)


def answer_sentence(context: str, start: int, end: int) -> tuple[int, int]:
    """Character span of the sentence(s) of ``context`` holding [start, end)."""
    spans, begin = [], 0
    for match in _SENTENCE_END.finditer(context):
        spans.append((begin, match.start()))
        begin = match.end()
    spans.append((begin, len(context)))
    first = max(i for i, (left, _) in enumerate(spans) if left <= start)
    last = min(i for i, (_, right) in enumerate(spans) if right >= end)
    return spans[first][0], spans[max(first, last)][1]


def sentence_articles(articles: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    """SQuAD articles whose paragraphs are one question each, with its answer's sentence."""
    cut = []
    for article in articles:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                start = answer["answer_start"]
                end = start + len(answer["text"])
                if context[start:end] != answer["text"]:
                    raise XstiltsError(f"{source}: question {qa['id']}: answer not at its start")
                left, right = answer_sentence(context, start, end)
                answers = [
                    {"text": a["text"], "answer_start": a["answer_start"] - left}
                    for a in qa["answers"]
                    if left <= a["answer_start"] and a["answer_start"] + len(a["text"]) <= right
                ]
                paragraphs.append(
                    {"context": context[left:right], "qas": [{**qa, "answers": answers}]}
                )
        cut.append({"title": article.get("title", ""), "paragraphs": paragraphs})
    return cut


def write_xquad_sentences(out_dir: Path) -> None:
    """``xquad_sentences/{split}-{lang}.json``: train and validation in English, test in
    every language (see the module docstring)."""
    folder = out_dir / "xquad_sentences"
    folder.mkdir(parents=True, exist_ok=True)
    for lang in XQUAD_LANGUAGES:
        source = real_samples() / "xquad" / f"xquad.{lang}.json"
        articles = sentence_articles(json.loads(source.read_text("utf-8"))["data"], source)
        for split, chosen in XQUAD_ARTICLE_SPLITS.items():
            if split != "test" and lang != "en":
                continue
            payload = {"version": "xquad-sentences", "data": [articles[i] for i in chosen]}
            _write(folder / f"{split}-{lang}.json", json.dumps(payload, ensure_ascii=False))


def qnli_rows(articles: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Question + sentence pairs from SQuAD-format articles: every other question is
    paired with its answer's sentence (entailment), the rest with another sentence of
    the paragraph, outside the answer's (not_entailment; picked by the pair's position,
    so the same everywhere; the next paragraph's first sentence when there is none)."""
    rows, count = [], 0
    for article in articles:
        paragraphs = article["paragraphs"]
        for index, paragraph in enumerate(paragraphs):
            context = paragraph["context"]
            sentences = [(m.start(), m.end()) for m in _SENTENCE_SPAN.finditer(context)]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                start = answer["answer_start"]
                left, right = answer_sentence(context, start, start + len(answer["text"]))
                if count % 2 == 0:
                    sentence, label = context[left:right], "entailment"
                else:
                    others = [context[a:b] for a, b in sentences if b <= left or a >= right]
                    if not others and index + 1 < len(paragraphs):
                        following = paragraphs[index + 1]["context"]
                        others = [m.group(0) for m in _SENTENCE_SPAN.finditer(following)][:1]
                    if not others:
                        continue
                    sentence, label = others[count % len(others)], "not_entailment"
                rows.append({"question": qa["question"], "sentence": sentence.strip(),
                             "label": label})  # fmt: skip
                count += 1
    return rows


def write_xquad_qnli(out_dir: Path) -> None:
    """``xquad_qnli/{split}-{lang}.jsonl``: validation in English, train and test in
    every XQuAD language (``xquad_qnli`` trains on English only,
    ``xquad_qnli_multilingual`` on the translations), from the same article splits as
    ``xquad_sentences``."""
    folder = out_dir / "xquad_qnli"
    folder.mkdir(parents=True, exist_ok=True)
    for lang in XQUAD_LANGUAGES:
        source = real_samples() / "xquad" / f"xquad.{lang}.json"
        articles = json.loads(source.read_text("utf-8"))["data"]
        for split, chosen in XQUAD_ARTICLE_SPLITS.items():
            if split == "validation" and lang != "en":
                continue
            rows = qnli_rows([articles[i] for i in chosen])
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            _write(folder / f"{split}-{lang}.jsonl", text)


def write_tatoeba(out_dir: Path) -> None:
    """The shipped Tatoeba files where the catalog's local ``tatoeba`` task reads them."""
    folder = out_dir / "tatoeba"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((real_samples() / "tatoeba").glob("tatoeba.*")):
        _write(folder / path.name, path.read_text(encoding="utf-8"))


TATOEBA_TEXT_LANGUAGES = {"en": "deu-eng.eng", "de": "deu-eng.deu", "fr": "fra-eng.fra"}
TATOEBA_TEXT_LANGUAGES |= {"zh": "cmn-eng.cmn", "ar": "ara-eng.ara", "hi": "hin-eng.hin"}
TATOEBA_TEXT_TRAIN_LINES = 800
"""Of each language's 1000 sentences: the first train, the others validate."""


def write_tatoeba_text(out_dir: Path) -> None:
    """``tatoeba_text/{split}-{lang}.txt``: each language's Tatoeba sentences, one a line."""
    folder = out_dir / "tatoeba_text"
    folder.mkdir(parents=True, exist_ok=True)
    for lang, name in TATOEBA_TEXT_LANGUAGES.items():
        lines = (real_samples() / "tatoeba" / f"tatoeba.{name}").read_text("utf-8").splitlines()
        parts = {
            "train": lines[:TATOEBA_TEXT_TRAIN_LINES],
            "validation": lines[TATOEBA_TEXT_TRAIN_LINES:],
        }
        for split, part in parts.items():
            _write(folder / f"{split}-{lang}.txt", "".join(line + "\n" for line in part))


def write_ud_pos(out_dir: Path) -> None:
    """``ud_pos/train-en.conllu`` and ``ud_pos/held-out-en.conllu`` (EWT; the task
    splits the second into validation and test) and ``ud_pos/test-de.conllu`` (GSD)."""
    folder = out_dir / "ud_pos"
    folder.mkdir(parents=True, exist_ok=True)
    english = _conllu_sentences(real_samples() / "udpos" / "en_ewt-ud-dev.conllu")
    parts = {
        "train-en": english[:UD_ENGLISH_TRAIN_SENTENCES],
        "held-out-en": english[UD_ENGLISH_TRAIN_SENTENCES:],
        "test-de": _conllu_sentences(real_samples() / "udpos" / "de_gsd-ud-dev.conllu"),
    }
    for name, sentences in parts.items():
        _write(folder / f"{name}.conllu", "".join(sentences))


def _write(path: Path, text: str) -> None:
    """Write a file unless it already holds ``text``: an unchanged file keeps its
    fingerprint, so the features and evaluations made from it are reused."""
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)  # grid jobs write these at once and read them


def _conllu_sentences(path: Path) -> list[str]:
    """The sentence blocks of a CoNLL-U file, each with its trailing blank line."""
    text = path.read_text(encoding="utf-8").strip("\n")
    return [block + "\n\n" for block in text.split("\n\n") if block.strip()]


def _qnli_splits(*splits: str) -> dict[str, Any]:
    """The local sources of the QNLI-style pair files written by the samples."""
    return {
        split: {
            "local": {
                "path": f"xquad_qnli/{split}-{{lang}}.jsonl",
                "columns": {"text_a": "question", "text_b": "sentence"},
            }
        }
        for split in splits
    }


def stand_in_tasks() -> dict[str, Any]:
    """The task file of the stand-ins (UPOS labels in the order of the udpos task)."""
    upos = load_registry().get("udpos").labels
    return {
        "tasks": [
            {
                "name": "xquad_sentences",
                "description": "XQuAD questions with their answer's sentence as the context; "
                "English articles 0-35 train and validate, 36-47 test in en, de, zh, ar.",
                "family": "qa",
                "format": "span_qa",
                "metric": "squad",
                "languages": list(XQUAD_LANGUAGES),
                "max_length": 128,
                "batch_size": 16,
                "epochs": 2,
                # Windows of 128 tokens start 32 tokens apart (doc_stride as the step, the
                # paper's meaning); the rare sentence longer than a window needs two or three.
                "options": {"doc_stride": 32},
                "splits": {
                    split: {
                        "local": {
                            "path": f"xquad_sentences/{split}-{{lang}}.json",
                            "file_format": "squad",
                        }
                    }
                    for split in ("train", "validation", "test")
                },
            },
            {
                "name": "xquad_qnli",
                "description": "QNLI-style pairs from XQuAD: does the sentence answer the "
                "question? English articles 0-35 train and validate, 36-47 test in en, de, "
                "zh, ar.",
                "family": "nli",
                "format": "classification",
                "labels": ["entailment", "not_entailment"],
                "languages": list(XQUAD_LANGUAGES),
                "max_length": 128,
                "batch_size": 32,
                "epochs": 2,
                "splits": _qnli_splits("train", "validation", "test"),
            },
            {
                "name": "xquad_qnli_multilingual",
                "description": "The QNLI-style pairs of the training articles (0-29) in "
                "German, Chinese and Arabic, XQuAD's translations of the English ones; "
                "validated on the English pairs: the stand-in of translate-train data.",
                "family": "nli",
                "format": "classification",
                "labels": ["entailment", "not_entailment"],
                "languages": ["en"],
                "train_languages": [lang for lang in XQUAD_LANGUAGES if lang != "en"],
                "max_length": 128,
                "batch_size": 32,
                "epochs": 2,
                "splits": _qnli_splits("train", "validation"),
            },
            {
                "name": "tatoeba_text",
                "description": "Tatoeba sentences as plain text per language (800 to train, "
                "200 to validate), for masked language modelling: MAD-X language adapters.",
                "family": "mlm",
                "format": "mlm",
                "metric": "mlm_accuracy",
                "languages": list(TATOEBA_TEXT_LANGUAGES),
                "max_length": 64,
                "batch_size": 32,
                "epochs": 1,
                "splits": {
                    split: {"local": {"path": f"tatoeba_text/{split}-{{lang}}.txt"}}
                    for split in ("train", "validation")
                },
            },
            {
                "name": "ud_pos",
                "description": "UPOS tagging: English EWT dev sentences split into train, "
                "validation and an English test set (the last two by a hash of the sentence "
                "id); German GSD dev as the zero-shot test set.",
                "family": "syntax",
                "format": "tagging",
                "metric": "seqeval",
                "labels": upos,
                "languages": ["en", "de"],
                "max_length": 128,
                "batch_size": 32,
                "epochs": 1,
                "splits": _ud_pos_splits(),
            },
        ]
    }


def _ud_pos_splits() -> dict[str, Any]:
    """English validation and test: complementary hashed parts of one file of held-out
    sentences (disjoint by construction); German's test file as it is."""
    held_out = {"path": "ud_pos/held-out-{lang}.conllu", "file_format": "conllu"}

    def part(name: str) -> dict[str, Any]:
        return {"fraction": UD_ENGLISH_VALIDATION_SHARE, "part": name}

    return {
        "train": {"local": {"path": "ud_pos/train-{lang}.conllu", "file_format": "conllu"}},
        "validation": {"local": {**held_out, "holdout": part("held_out")}},
        "test": {
            "local": [
                {**held_out, "holdout": part("rest"), "languages": ["en"]},
                {"path": "ud_pos/test-{lang}.conllu", "file_format": "conllu"},
            ]
        },
    }


def write_stand_ins(out_dir: Path) -> Path:
    """Write every stand-in task's files and their task spec under ``out_dir``; return
    the spec file (for ``data.task_files``, with ``data.data_dir: out_dir``)."""
    write_xquad_sentences(out_dir)
    write_xquad_qnli(out_dir)
    write_ud_pos(out_dir)
    write_tatoeba(out_dir)
    write_tatoeba_text(out_dir)
    spec_file = out_dir / "stand-in-tasks.yaml"
    _write(spec_file, yaml.safe_dump(stand_in_tasks(), sort_keys=False))
    return spec_file
