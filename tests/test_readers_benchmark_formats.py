"""Readers of the original benchmark layouts: SQuAD JSON, CoNLL token/tag lines,
CoNLL-U treebanks, Tatoeba line-aligned pairs and BUCC 2018 id/sentence files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.samples import real_samples
from xstilts.tasks import TaskSpec, load_registry
from xstilts.tasks.loading import load_split
from xstilts.tasks.readers import (
    READERS,
    read_bucc,
    read_conll,
    read_conllu,
    read_squad,
    read_tatoeba,
)
from xstilts.tasks.registry import TASK_PATH_ENV

REAL = real_samples()


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(spec: TaskSpec, split: str, lang: str, data_dir: Path | None = None):
    fmt = get_format(spec.format)
    return load_split(
        spec, split, lang, fields=fmt.fields, check_row=fmt.check_row(spec), mode="local",
        data_dir=data_dir,
    )  # fmt: skip


def test_benchmark_readers_are_registered() -> None:
    assert READERS["squad"] is read_squad
    assert READERS["conll"] is read_conll
    assert READERS["conllu"] is read_conllu
    assert READERS["tatoeba"] is read_tatoeba
    assert READERS["bucc"] is read_bucc


# ---------------------------------------------------------------------------
# SQuAD JSON

SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Cats",
            "paragraphs": [
                {
                    "context": "Cats purr. Dogs bark.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "What do cats do?",
                            "answers": [
                                {"text": "purr", "answer_start": 5},
                                {"text": "purr.", "answer_start": 5},
                            ],
                        },
                        {
                            "id": "q2",
                            "question": "Who flies?",
                            "answers": [],
                            "plausible_answers": [{"text": "Dogs", "answer_start": 11}],
                            "is_impossible": True,
                        },
                    ],
                },
                {"context": "Zürich liegt am See.", "qas": [
                    {"id": "q3", "question": "Wo?", "answers": [
                        {"text": "am See", "answer_start": 13}]}]},
            ],
        },
        {"paragraphs": [{"context": "No title here.", "qas": [
            {"id": "q4", "question": "Title?"}]}]},
    ],
}  # fmt: skip


def test_read_squad_one_row_per_question(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.json", json.dumps(SQUAD, ensure_ascii=False))
    located = list(read_squad(path))
    rows = [row for _, row in located]
    assert [row["id"] for row in rows] == ["q1", "q2", "q3", "q4"]
    assert [row["title"] for row in rows] == ["Cats", "Cats", "Cats", ""]
    assert rows[0]["context"] == rows[1]["context"] == "Cats purr. Dogs bark."
    assert rows[2]["context"] == "Zürich liegt am See."
    assert rows[0]["question"] == "What do cats do?"
    assert rows[0]["answers"] == [
        {"text": "purr", "answer_start": 5},
        {"text": "purr.", "answer_start": 5},
    ]
    assert rows[1]["answers"] == [] and rows[1]["is_impossible"] is True
    assert rows[3]["answers"] == [] and rows[3]["is_impossible"] is False
    assert [where for where, _ in located] == [f"{path} (question q{i})" for i in range(1, 5)]


def squad_spec(path: Path) -> TaskSpec:
    return TaskSpec(
        name="qa", family="qa", format="span_qa", metric="squad",
        splits={"validation": {"local": {"path": str(path), "file_format": "squad"}}},
    )  # fmt: skip


def test_squad_errors_name_the_question(tmp_path: Path) -> None:
    payload = json.loads(json.dumps(SQUAD))
    payload["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = "13"
    path = write(tmp_path / "bad.json", json.dumps(payload))
    with pytest.raises(XstiltsError, match=r"bad\.json \(question q3\): answer_start must be"):
        load(squad_spec(path), "validation", "en")
    spec = squad_spec(write(tmp_path / "good.json", json.dumps(SQUAD)))
    examples = load(spec, "validation", "en").examples
    assert examples["id"] == ["q1", "q2", "q3", "q4"]
    assert examples["answers"][2] == [{"text": "am See", "answer_start": 13}]


def test_squad_file_errors(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.json", '{"data": [\n  {"paragraphs": }\n]}')
    with pytest.raises(XstiltsError, match=r"broken\.json:2: not valid JSON"):
        list(read_squad(broken))
    wrong = write(tmp_path / "list.json", "[]")
    with pytest.raises(XstiltsError, match="expected SQuAD JSON"):
        list(read_squad(wrong))


def test_squad_question_without_id_is_a_clear_error(tmp_path: Path) -> None:
    payload = {"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}
    path = write(tmp_path / "noid.json", json.dumps(payload))
    with pytest.raises(XstiltsError, match=re.escape(str(path))):
        list(read_squad(path))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_read_squad_on_real_xquad(lang: str) -> None:
    path = REAL / "xquad" / f"xquad.{lang}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    expected = [qa["id"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]]
    rows = [row for _, row in read_squad(path)]
    assert [row["id"] for row in rows] == expected
    assert len(rows) == 1190
    for row in rows:
        assert row["answers"]
        for answer in row["answers"]:
            start = answer["answer_start"]
            assert row["context"][start : start + len(answer["text"])] == answer["text"]


def test_catalog_xquad_reads_the_real_file(registry, tmp_path: Path) -> None:
    spec = registry.get("xquad")
    loaded = load(spec, "test", "de", data_dir=REAL)
    assert len(loaded.examples) == 1190
    assert loaded.examples[0]["id"] == "56beb4343aeaaa14008c925b"


# ---------------------------------------------------------------------------
# CoNLL: token<TAB>label


PANX = (
    "en:Paris\tB-LOC\n"
    "en:is\tO\n"
    "en:nice\tO\n"
    "\n"
    "\n"
    "en:en:Bob\tB-PER\n"
    "Smith\tI-PER\n"
    "de:x\tO\n"
    "\n"
    "en:only\n"
    "en:tokens\n"
    "\n"
    "last  B-ORG\n"
    "one O"  # no final newline
)


def test_read_conll_panx_layout(tmp_path: Path) -> None:
    path = write(tmp_path / "dev-en.tsv", PANX)
    located = list(read_conll(path, token_prefix="en:"))
    assert [line for line, _ in located] == [1, 6, 10, 13]
    rows = [row for _, row in located]
    assert rows[0] == {"tokens": ["Paris", "is", "nice"], "tags": ["B-LOC", "O", "O"]}
    # the prefix is removed once, and only where present
    assert rows[1] == {"tokens": ["en:Bob", "Smith", "de:x"], "tags": ["B-PER", "I-PER", "O"]}
    assert rows[2] == {"tokens": ["only", "tokens"], "tags": None}  # unlabelled
    assert rows[3] == {"tokens": ["last", "one"], "tags": ["B-ORG", "O"]}  # space-separated
    without = [row["tokens"] for _, row in read_conll(path)]
    assert without[0] == ["en:Paris", "en:is", "en:nice"]


def test_read_conll_windows_line_endings_and_tokens_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "crlf.tsv"
    path.write_bytes(b"a b\tX\r\nc\tY\r\n\r\nd\tZ\r\n")
    rows = [row for _, row in read_conll(path)]
    assert rows == [{"tokens": ["a b", "c"], "tags": ["X", "Y"]}, {"tokens": ["d"], "tags": ["Z"]}]


def test_read_conll_mixed_labels_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.tsv", "a\tO\n\nb\tO\nc\nd\tO\n")
    with pytest.raises(
        XstiltsError, match=rf"^{re.escape(str(path))}:3: some tokens of this sentence have no"
    ):
        list(read_conll(path))


def test_catalog_panx_reads_prefixed_tokens(registry, tmp_path: Path) -> None:
    write(tmp_path / "panx" / "dev-en.tsv", PANX.replace("last  B-ORG", "last\tB-ORG"))
    write(tmp_path / "panx" / "dev-de.tsv", "de:Berlin\tB-LOC\nen:x\tO\n")
    examples = load(registry.get("panx"), "validation", "en", tmp_path).examples
    labels = registry.get("panx").labels
    assert examples["tokens"][0] == ["Paris", "is", "nice"]
    assert examples["tags"][0] == [labels.index("B-LOC"), 0, 0]
    assert examples["tags"][2] == []  # the unlabelled sentence
    german = load(registry.get("panx"), "validation", "de", tmp_path).examples
    assert german["tokens"] == [["Berlin", "en:x"]]


def test_conll_label_errors_name_the_sentence_line(registry, tmp_path: Path) -> None:
    path = write(tmp_path / "panx" / "dev-en.tsv", "en:a\tO\n\nen:b\tO\nen:c\tB-MISC\n")
    with pytest.raises(
        XstiltsError, match=rf"{re.escape(str(path))}:3: label 'B-MISC' is not one of"
    ):
        load(registry.get("panx"), "validation", "en", tmp_path)


# ---------------------------------------------------------------------------
# CoNLL-U


CONLLU = """\
# newdoc id = d1
# sent_id = s-1
# text = Today's fine.
1-2\tToday's\t_\t_\t_\t_\t_\t_\t_\t_
1\tToday\ttoday\tNOUN\tNN\t_\t3\tnsubj\t_\t_
2\t's\tbe\tAUX\tVBZ\t_\t3\tcop\t_\t_
3\tfine\tfine\tADJ\tJJ\t_\t0\troot\t_\t_
3.1\tis\tbe\tAUX\tVBZ\t_\t_\t_\t3:orphan\t_

# a comment-only block is no sentence

1\tNo\tno\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_read_conllu_skips_ranges_and_empty_nodes(tmp_path: Path) -> None:
    path = write(tmp_path / "x.conllu", CONLLU)
    located = list(read_conllu(path))
    assert [line for line, _ in located] == [1, 12]
    rows = [row for _, row in located]
    assert rows[0] == {
        "id": "s-1",
        "tokens": ["Today", "'s", "fine"],
        "tags": ["NOUN", "AUX", "ADJ"],
    }
    assert rows[1] == {"id": None, "tokens": ["No"], "tags": ["INTJ"]}
    xpos = [row["tags"] for _, row in read_conllu(path, tag_column="xpos")]
    assert xpos == [["NN", "VBZ", "JJ"], ["UH"]]


def test_read_conllu_malformed_line(tmp_path: Path) -> None:
    text = CONLLU.replace("2\t's\tbe\tAUX\tVBZ\t_\t3\tcop\t_\t_", "2\t's\tbe\tAUX")
    path = write(tmp_path / "bad.conllu", text)
    with pytest.raises(
        XstiltsError, match=rf"^{re.escape(str(path))}:6: expected 10 tab-separated"
    ):
        list(read_conllu(path))


def _count_by_hand(path: Path) -> list[tuple[str | None, list[str], list[str]]]:
    """Sentences of a CoNLL-U file: (sent_id, words, UPOS) of integer-id lines."""
    sentences, sent_id, words, tags = [], None, [], []
    for line in [*path.read_text(encoding="utf-8").split("\n"), ""]:
        if not line.strip():
            if words:
                sentences.append((sent_id, words, tags))
            sent_id, words, tags = None, [], []
        elif line.startswith("# sent_id = "):
            sent_id = line[len("# sent_id = ") :]
        elif not line.startswith("#"):
            fields = line.split("\t")
            if fields[0].isdigit():
                words.append(fields[1])
                tags.append(fields[3])
    return sentences


@pytest.mark.parametrize("name", ["en_ewt-ud-dev.conllu", "de_gsd-ud-dev.conllu"])
def test_read_conllu_on_real_treebanks(name: str) -> None:
    path = REAL / "udpos" / name
    rows = [row for _, row in read_conllu(path)]
    expected = _count_by_hand(path)
    assert len(rows) == len(expected) > 500
    if name.startswith("en"):
        assert len(rows) == 2001
    assert sum(len(r["tokens"]) for r in rows) == sum(len(w) for _, w, _ in expected)
    assert [(r["id"], r["tokens"], r["tags"]) for r in rows] == expected
    for row in rows:
        assert len(row["tokens"]) == len(row["tags"]) > 0
        assert all("\t" not in t for t in row["tokens"])


def test_real_en_ewt_multiword_tokens_and_empty_nodes() -> None:
    path = REAL / "udpos" / "en_ewt-ud-dev.conllu"
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = {row["id"]: row for _, row in read_conllu(path)}
    assert rows["weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001"][
        "tokens"
    ] == ["From", "the", "AP", "comes", "this", "story", ":"]

    def sentence_at(line_no: int) -> tuple[dict, list[str]]:
        start = line_no - 1
        while lines[start - 1].strip():
            start -= 1
        block = []
        while lines[start].strip():
            block.append(lines[start])
            start += 1
        sent_id = next(b.split("=", 1)[1].strip() for b in block if b.startswith("# sent_id"))
        return rows[sent_id], block

    ranges = [i + 1 for i, line in enumerate(lines) if re.match(r"\d+-\d+\t", line)]
    empties = [i + 1 for i, line in enumerate(lines) if re.match(r"\d+\.\d+\t", line)]
    assert len(ranges) == 359 and len(empties) == 4
    for line_no in ranges[:20] + empties:
        row, block = sentence_at(line_no)
        integer = [b.split("\t") for b in block if b.split("\t")[0].isdigit()]
        assert row["tokens"] == [f[1] for f in integer]
        assert len(row["tokens"]) == int(integer[-1][0])  # ids 1..n, nothing else
    row, _ = sentence_at(ranges[0])
    multiword = lines[ranges[0] - 1].split("\t")[1]
    assert multiword == "didn't"
    assert "didn't" not in row["tokens"] and row["tokens"].count("n't") >= 1


# ---------------------------------------------------------------------------
# Tatoeba


def test_read_tatoeba(tmp_path: Path) -> None:
    src = write(tmp_path / "tatoeba.deu-eng.deu", "Hallo.\nWie geht's?\nTschüss.\n")
    tgt = write(tmp_path / "tatoeba.deu-eng.eng", "Hello.\nHow are you?\nBye.\n")
    located = list(read_tatoeba(src, companions={"target": tgt}))
    assert [where for where, _ in located] == [1, 2, 3, f"{tgt}:1", f"{tgt}:2", f"{tgt}:3"]
    rows = [row for _, row in located]
    assert rows[:3] == [
        {"side": "source", "id": "0", "text": "Hallo.", "gold": "0"},
        {"side": "source", "id": "1", "text": "Wie geht's?", "gold": "1"},
        {"side": "source", "id": "2", "text": "Tschüss.", "gold": "2"},
    ]
    assert rows[3:] == [
        {"side": "target", "id": "0", "text": "Hello.", "gold": ""},
        {"side": "target", "id": "1", "text": "How are you?", "gold": ""},
        {"side": "target", "id": "2", "text": "Bye.", "gold": ""},
    ]


def test_read_tatoeba_needs_aligned_files(tmp_path: Path) -> None:
    src = write(tmp_path / "tatoeba.fra-eng.fra", "Un.\nDeux.\nTrois.\n")
    tgt = write(tmp_path / "tatoeba.fra-eng.eng", "One.\nTwo.\n")
    with pytest.raises(XstiltsError) as caught:
        list(read_tatoeba(src, companions={"target": tgt}))
    message = str(caught.value)
    assert f"{src} has 3 lines but {tgt} has 2" in message
    assert "line-aligned" in message
    with pytest.raises(XstiltsError, match="needs a 'target' file under 'companions'"):
        list(read_tatoeba(src))
    with pytest.raises(XstiltsError, match=r"data file not found \(the 'target' file of"):
        list(read_tatoeba(src, companions={"target": tmp_path / "missing.eng"}))


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c"])
def test_read_tatoeba_splits_only_at_newlines(tmp_path: Path, separator: str) -> None:
    src = write(tmp_path / "tatoeba.xxx-eng.xxx", f"eins{separator}zwei\ndrei\n")
    tgt = write(tmp_path / "tatoeba.xxx-eng.eng", "one two\nthree\n")
    rows = [row for _, row in read_tatoeba(src, companions={"target": tgt})]
    assert [row["text"] for row in rows] == [f"eins{separator}zwei", "drei", "one two", "three"]


@pytest.mark.parametrize(("lang", "code"), [("de", "deu"), ("zh", "cmn"), ("hi", "hin")])
def test_catalog_tatoeba_on_real_files(registry, lang: str, code: str) -> None:
    examples = load(registry.get("tatoeba"), "test", lang, REAL).examples
    folder = REAL / "tatoeba"
    sources = (folder / f"tatoeba.{code}-eng.{code}").read_text("utf-8").rstrip("\n").split("\n")
    targets = (folder / f"tatoeba.{code}-eng.eng").read_text("utf-8").rstrip("\n").split("\n")
    assert len(sources) == len(targets) == 1000
    assert len(examples) == 2000
    assert examples["side"] == ["source"] * 1000 + ["target"] * 1000
    assert examples["text"] == sources + targets
    assert examples["id"] == [str(i) for i in range(1000)] * 2
    assert examples["gold"] == [str(i) for i in range(1000)] + [""] * 1000


# ---------------------------------------------------------------------------
# BUCC 2018


def _bucc_files(folder: Path, gold: str | None) -> Path:
    src = write(
        folder / "de-en.dev.de",
        "de-000000001\tDas ist gut.\nde-000000002\tKein Paar hier.\n\nde-000000003\tTab\tim Satz\n",
    )
    write(
        folder / "de-en.dev.en",
        "en-000000007\tThat is good.\nen-000000008\tA tab\tinside.\nen-000000009\tLonely.\n",
    )
    if gold is not None:
        write(folder / "de-en.dev.gold", gold)
    return src


def test_read_bucc_attaches_gold_to_sources(tmp_path: Path) -> None:
    src = _bucc_files(tmp_path, "de-000000001\ten-000000007\nde-000000003\ten-000000008\n")
    companions = {"target": tmp_path / "de-en.dev.en", "gold": tmp_path / "de-en.dev.gold"}
    located = list(read_bucc(src, companions=companions))
    tgt = tmp_path / "de-en.dev.en"
    assert [where for where, _ in located] == [1, 2, 4, f"{tgt}:1", f"{tgt}:2", f"{tgt}:3"]
    rows = [row for _, row in located]
    assert rows == [
        {"side": "source", "id": "de-000000001", "text": "Das ist gut.", "gold": "en-000000007"},
        {"side": "source", "id": "de-000000002", "text": "Kein Paar hier.", "gold": ""},
        {"side": "source", "id": "de-000000003", "text": "Tab\tim Satz", "gold": "en-000000008"},
        {"side": "target", "id": "en-000000007", "text": "That is good.", "gold": ""},
        {"side": "target", "id": "en-000000008", "text": "A tab\tinside.", "gold": ""},
        {"side": "target", "id": "en-000000009", "text": "Lonely.", "gold": ""},
    ]
    # the test split's gold is not distributed: no gold file means no gold
    companions["gold"] = tmp_path / "de-en.test.gold"
    assert all(row["gold"] == "" for _, row in read_bucc(src, companions=companions))
    assert all(row["gold"] == "" for _, row in read_bucc(src, companions={"target": tgt}))


def test_read_bucc_errors(tmp_path: Path) -> None:
    gold_text = (
        "de-000000001\ten-000000007\nde-000000002\ten-000000009\nde-000000001\ten-000000008\n"
    )
    src = _bucc_files(tmp_path, gold_text)
    gold = tmp_path / "de-en.dev.gold"
    companions = {"target": tmp_path / "de-en.dev.en", "gold": gold}
    with pytest.raises(
        XstiltsError, match=rf"^{re.escape(str(gold))}:3: source de-000000001 has two gold pairs"
    ):
        list(read_bucc(src, companions=companions))
    write(gold, "de-000000001 en-000000007\n")
    with pytest.raises(XstiltsError, match=rf"^{re.escape(str(gold))}:1: expected 'id<TAB>text'"):
        list(read_bucc(src, companions=companions))
    with pytest.raises(XstiltsError, match="needs a 'target' file"):
        list(read_bucc(src, companions={"gold": gold}))


def test_catalog_bucc_reads_the_xtreme_layout(registry, tmp_path: Path) -> None:
    _bucc_files(tmp_path / "bucc2018", "de-000000001\ten-000000007\n")
    loaded = load(registry.get("bucc2018"), "validation", "de", tmp_path)
    examples = loaded.examples
    assert examples["side"] == ["source"] * 3 + ["target"] * 3
    assert examples["gold"] == ["en-000000007", "", "", "", "", ""]
    assert examples["id"][:3] == ["de-000000001", "de-000000002", "de-000000003"]
    with pytest.raises(XstiltsError, match="data file not found"):
        load(registry.get("bucc2018"), "test", "de", tmp_path)
