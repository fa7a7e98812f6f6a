"""Local readers and ``load_split``, on fixture files in the original distributions' layouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.tasks import TaskSpec, load_registry
from xstilts.tasks.loading import LoadedSplit, load_split
from xstilts.tasks.readers import (
    infer_file_format,
    read_csv,
    read_json,
    read_jsonl,
    read_parquet,
    read_tsv,
)
from xstilts.tasks.registry import TASK_PATH_ENV

NLI = ["entailment", "neutral", "contradiction"]

# GLUE MNLI column layouts (train has one annotator label, the dev sets five).
MNLI_TRAIN_HEADER = [
    "index", "promptID", "pairID", "genre",
    "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
    "sentence1", "sentence2", "label1", "gold_label",
]  # fmt: skip
MNLI_DEV_HEADER = [
    *MNLI_TRAIN_HEADER[:-1], "label2", "label3", "label4", "label5", "gold_label",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


# ---------------------------------------------------------------------------
# helpers


def write_jsonl(path: Path, rows: list[dict], blank_after: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        lines.append(json.dumps(row, ensure_ascii=False))
        if blank_after is not None and i == blank_after:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    """Plain tab-joined lines, no quoting: as GLUE and the XTREME scripts leave them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spec_for(fmt: str, labels: list[str], split: str = "train", **source: object) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "name": "fixture",
            "family": "test",
            "format": fmt,
            "labels": labels,
            "splits": {split: {"local": source}},
        }
    )


def load(spec: TaskSpec, split: str = "train", lang: str = "en", **kwargs) -> LoadedSplit:
    fmt = get_format(spec.format)
    kwargs.setdefault("mode", "local")
    return load_split(spec, split, lang, fields=fmt.fields, check_row=fmt.check_row(spec), **kwargs)


def mnli_row(i: int, s1: str, s2: str, gold: str, header: list[str]) -> list[str]:
    values = {
        "index": str(i), "promptID": str(1000 + i), "pairID": f"{1000 + i}e", "genre": "fiction",
        "sentence1_binary_parse": f"( {s1} )", "sentence2_binary_parse": f"( {s2} )",
        "sentence1_parse": f"(ROOT {s1})", "sentence2_parse": f"(ROOT {s2})",
        "sentence1": s1, "sentence2": s2,
    }  # fmt: skip
    return [values.get(col, gold) for col in header]


# ---------------------------------------------------------------------------
# readers


def test_infer_file_format(tmp_path: Path) -> None:
    assert infer_file_format(Path("a/b.JSONL")) == "jsonl"
    assert infer_file_format(Path("dev-de.tsv")) == "tsv"
    assert infer_file_format(Path("x.parquet")) == "parquet"
    assert infer_file_format(Path("en.train.txt")) == "text"
    with pytest.raises(XstiltsError, match=r"\.dat"):
        infer_file_format(tmp_path / "data.dat")


def test_read_jsonl_line_numbers_skip_blank_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}, {"x": 2}, {"x": 3}], blank_after=0)
    assert list(read_jsonl(path)) == [(1, {"x": 1}), (3, {"x": 2}), (4, {"x": 3})]


def test_read_jsonl_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"x": 1}\n{"x": \n', encoding="utf-8")
    with pytest.raises(XstiltsError, match=f"^{path}:2: not valid JSON"):
        list(read_jsonl(path))
    path.write_text('{"x": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(XstiltsError, match=f"^{path}:2: expected a JSON object"):
        list(read_jsonl(path))


def test_read_json_array_and_data_key(tmp_path: Path) -> None:
    rows = [{"a": "x"}, {"a": "y"}]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(rows), encoding="utf-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": rows}), encoding="utf-8")
    assert list(read_json(plain)) == [(1, rows[0]), (2, rows[1])]
    assert list(read_json(wrapped)) == [(1, rows[0]), (2, rows[1])]
    wrapped.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    with pytest.raises(XstiltsError, match="JSON array"):
        list(read_json(wrapped))


def test_read_tsv_without_header_keeps_bare_quotes(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "dev-en.tsv",
        [['He said "no.', "He refused.", "entailment"], ["A 'b' c", '"quoted"', "neutral"]],
    )
    rows = list(read_tsv(path, header=False, column_names=["text_a", "text_b", "label"]))
    assert rows == [
        (1, {"text_a": 'He said "no.', "text_b": "He refused.", "label": "entailment"}),
        (2, {"text_a": "A 'b' c", "text_b": '"quoted"', "label": "neutral"}),
    ]
    with pytest.raises(XstiltsError, match="column_names"):
        list(read_tsv(path, header=False))


def test_read_tsv_with_header(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "t.tsv", [["x", "0"], ["y", "1"]], header=["sentence", "label"])
    assert list(read_tsv(path)) == [
        (2, {"sentence": "x", "label": "0"}),
        (3, {"sentence": "y", "label": "1"}),
    ]
    # column_names given with a header line: the header is skipped, the names win.
    assert next(read_tsv(path, header=True, column_names=["text_a", "label"])) == (
        2,
        {"text_a": "x", "label": "0"},
    )


def test_read_tsv_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "t.tsv", [["x", "0"], ["y"]], header=["sentence", "label"])
    with pytest.raises(XstiltsError, match=f"^{path}:3: expected 2 fields"):
        list(read_tsv(path))


def test_read_csv_quoted_fields_and_multiline_records(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "context", "label"])
        writer.writerow(["a", 'She said "hi", then left.', "0"])
        writer.writerow(["b", "two\nlines", "1"])
        writer.writerow(["c", "plain", "2"])
    rows = list(read_csv(path))
    assert [r["context"] for _, r in rows] == ['She said "hi", then left.', "two\nlines", "plain"]
    assert [line for line, _ in rows] == [2, 3, 5]


def test_read_parquet(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    table = pa.table({"premise": ["p1", "p2"], "label": [0, 2], "nested": [{"a": 1}, {"a": 2}]})
    pq.write_table(table, path)
    assert list(read_parquet(path)) == [
        (1, {"premise": "p1", "label": 0, "nested": {"a": 1}}),
        (2, {"premise": "p2", "label": 2, "nested": {"a": 2}}),
    ]


# ---------------------------------------------------------------------------
# load_split: mapping, normalisation, errors


def test_column_mapping_and_int_labels_from_parquet(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0]}),
        tmp_path / "train.parquet",
    )
    spec = spec_for(
        "classification",
        NLI,
        path="train.parquet",
        columns={"text_a": "premise", "text_b": "hypothesis"},
    )
    loaded = load(spec, data_dir=tmp_path)
    assert loaded.examples["text_a"] == ["p1", "p2"]
    assert loaded.examples["text_b"] == ["h1", "h2"]
    assert loaded.examples["label"] == [2, 0]
    assert loaded.examples["id"] == ["0", "1"]
    assert (loaded.task, loaded.split, loaded.language, loaded.dropped) == (
        "fixture",
        "train",
        "en",
        0,
    )


def test_json_and_csv_sources(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(
        json.dumps({"data": [{"s": "a", "y": "neutral"}]}), encoding="utf-8"
    )
    spec = spec_for("classification", NLI, path="d.json", columns={"text_a": "s", "label": "y"})
    assert load(spec, data_dir=tmp_path).examples["label"] == [1]
    (tmp_path / "d.csv").write_text('s,y\n"a, b",contradiction\n', encoding="utf-8")
    spec = spec_for("classification", NLI, path="d.csv", columns={"text_a": "s", "label": "y"})
    loaded = load(spec, data_dir=tmp_path)
    assert loaded.examples["text_a"] == ["a, b"]
    assert loaded.examples["label"] == [2]


def test_explicit_file_format_overrides_suffix(tmp_path: Path) -> None:
    write_tsv(tmp_path / "data.txt", [["a", "entailment"]])
    spec = spec_for(
        "classification",
        NLI,
        path="data.txt",
        file_format="tsv",
        header=False,
        column_names=["text_a", "label"],
    )
    assert load(spec, data_dir=tmp_path).examples["label"] == [0]


def test_dotted_paths_reach_into_nested_records(tmp_path: Path) -> None:
    """CommonsenseQA's original jsonl: choices are a list of {label, text} records."""
    row = {
        "answerKey": "B",
        "id": "075e483d21c29a511267ef62bedc0461",
        "question": {
            "question_concept": "punishing",
            "choices": [
                {"label": "A", "text": "ignore"},
                {"label": "B", "text": "enforce"},
                {"label": "C", "text": "authoritarian"},
                {"label": "D", "text": "yell at"},
                {"label": "E", "text": "avoid"},
            ],
            "stem": "The sanctions against the school were a punishing blow?",
        },
    }
    write_jsonl(tmp_path / "q.jsonl", [row])
    spec = spec_for(
        "multiple_choice",
        ["A", "B", "C", "D", "E"],
        path="q.jsonl",
        columns={
            "context": "question.stem",
            "choices": "question.choices.text",
            "label": "answerKey",
        },
    )
    loaded = load(spec, data_dir=tmp_path)
    [example] = loaded.examples
    assert example["context"] == row["question"]["stem"]
    assert example["choices"] == ["ignore", "enforce", "authoritarian", "yell at", "avoid"]
    assert example["label"] == 1
    assert example["id"] == row["id"]


def test_list_of_columns_is_gathered(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "mc.jsonl",
        [{"ctx": "c", "a0": "x", "a1": "y", "a2": "z", "label": "2"}],
    )
    spec = spec_for(
        "multiple_choice",
        ["0", "1", "2"],
        path="mc.jsonl",
        columns={"context": "ctx", "choices": ["a0", "a1", "a2"]},
    )
    [example] = load(spec, data_dir=tmp_path).examples
    assert example["choices"] == ["x", "y", "z"]
    assert example["label"] == 2


def test_value_maps_and_label_map(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"premise": "p", "hypothesis": "h", "label": "e", "kind": "cause"},
            {"premise": "p", "hypothesis": "h", "label": "c", "kind": "other"},
        ],
    )
    spec = spec_for(
        "classification",
        NLI,
        path="r.jsonl",
        columns={"text_a": "premise", "text_b": "kind"},
        label_map={"e": "entailment", "n": "neutral", "c": "contradiction"},
        value_maps={"text_b": {"cause": "What was the cause?"}},
    )
    loaded = load(spec, data_dir=tmp_path)
    assert loaded.examples["label"] == [0, 2]
    assert loaded.examples["text_b"] == ["What was the cause?", "other"]


def test_drop_labels_counts_dropped_examples(tmp_path: Path) -> None:
    rows = [
        {"sentence1": f"s{i}", "sentence2": "t", "gold_label": g}
        for i, g in enumerate(["neutral", "-", "entailment", "-", "-", "contradiction"])
    ]
    write_jsonl(tmp_path / "s.jsonl", rows)
    spec = spec_for(
        "classification",
        NLI,
        path="s.jsonl",
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"},
        drop_labels=["-"],
    )
    loaded = load(spec, data_dir=tmp_path)
    assert loaded.dropped == 3
    assert loaded.examples["text_a"] == ["s0", "s2", "s5"]
    assert loaded.examples["label"] == [1, 0, 2]


def test_max_examples_subsample_is_deterministic(tmp_path: Path) -> None:
    rows = [{"text_a": f"s{i}", "label": "neutral", "id": f"id{i}"} for i in range(50)]
    write_jsonl(tmp_path / "big.jsonl", rows)
    spec = spec_for("classification", NLI, path="big.jsonl")
    full = load(spec, data_dir=tmp_path)
    first = load(spec, data_dir=tmp_path, max_examples=10, subsample_seed=3)
    again = load(spec, data_dir=tmp_path, max_examples=10, subsample_seed=3)
    other = load(spec, data_dir=tmp_path, max_examples=10, subsample_seed=4)
    assert len(full.examples) == 50
    assert len(first.examples) == 10
    assert first.examples["id"] == again.examples["id"]
    assert first.fingerprint == again.fingerprint
    assert len(set(first.examples["id"])) == 10
    assert set(first.examples["id"]) <= set(full.examples["id"])
    assert first.examples["id"] != other.examples["id"]
    assert first.examples["id"] != full.examples["id"][:10]  # really a random sample
    assert len({full.fingerprint, first.fingerprint, other.fingerprint}) == 3
    # No subsampling when the split is already small enough.
    assert len(load(spec, data_dir=tmp_path, max_examples=500).examples) == 50


def test_fingerprint_changes_with_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [{"text_a": "a", "label": "neutral"}])
    spec = spec_for("classification", NLI, path="f.jsonl")
    before = load(spec, data_dir=tmp_path).fingerprint
    assert load(spec, data_dir=tmp_path).fingerprint == before
    write_jsonl(path, [{"text_a": "a", "label": "neutral"}, {"text_a": "b", "label": "neutral"}])
    assert load(spec, data_dir=tmp_path).fingerprint != before


def test_missing_file_lists_every_tried_path(tmp_path: Path) -> None:
    spec = spec_for("classification", NLI, path=["a/{lang}.tsv", "b/{lang}.tsv"])
    spec = spec.model_copy(update={"base_dir": tmp_path / "spec_home"})
    data_dir = tmp_path / "data"
    with pytest.raises(XstiltsError, match="data file not found") as err:
        load(spec, lang="de", data_dir=data_dir)
    message = str(err.value)
    for base in (data_dir, tmp_path / "spec_home"):
        for rel in ("a/de.tsv", "b/de.tsv"):
            assert str(base / rel) in message
    assert "language 'de'" in message


def test_missing_file_without_data_dir_hints_at_it(tmp_path: Path) -> None:
    spec = spec_for("classification", NLI, path="nowhere.jsonl")
    with pytest.raises(XstiltsError, match=r"data\.data_dir"):
        load(spec)


def test_later_path_candidates_and_user_base_dir(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "second.jsonl", [{"text_a": "a", "label": "neutral"}])
    spec = spec_for("classification", NLI, path=["first.jsonl", "second.jsonl"])
    spec = spec.model_copy(update={"base_dir": tmp_path})
    assert load(spec).examples["text_a"] == ["a"]  # found beside the task file


def test_absolute_path(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "abs.jsonl", [{"text_a": "a", "label": "neutral"}])
    spec = spec_for("classification", NLI, path=str(path))
    assert load(spec, data_dir=tmp_path / "elsewhere").examples["text_a"] == ["a"]


def test_bad_label_in_jsonl_names_file_and_line(tmp_path: Path) -> None:
    rows = [
        {"text_a": "a", "label": "neutral"},
        {"text_a": "b", "label": "entailment"},
        {"text_a": "c", "label": "maybe"},
    ]
    path = write_jsonl(tmp_path / "sub" / "bad.jsonl", rows, blank_after=0)
    spec = spec_for("classification", NLI, path="sub/bad.jsonl")
    with pytest.raises(XstiltsError) as err:
        load(spec, data_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: ")  # the blank line 2 counts
    assert "'maybe'" in message
    assert "task 'fixture'" in message


def test_bad_label_in_headered_tsv_names_file_and_line(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "MNLI" / "dev_matched.tsv",
        [
            mnli_row(0, "A man.", "A person.", "entailment", MNLI_DEV_HEADER),
            mnli_row(1, "A dog.", "A cat.", "contradiction", MNLI_DEV_HEADER),
            mnli_row(2, "Rain.", "Wet.", "bogus", MNLI_DEV_HEADER),
        ],
        header=MNLI_DEV_HEADER,
    )
    spec = spec_for(
        "classification",
        NLI,
        split="validation",
        path="MNLI/dev_matched.tsv",
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"},
    )
    with pytest.raises(XstiltsError) as err:
        load(spec, split="validation", data_dir=tmp_path)
    assert str(err.value).startswith(f"{path}:4: ")
    assert "'bogus'" in str(err.value)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    write_tsv(tmp_path / "empty.tsv", [], header=["text_a", "label"])
    spec = spec_for("classification", NLI, path="empty.tsv")
    with pytest.raises(XstiltsError, match=r"is empty: no examples in empty\.tsv"):
        load(spec, data_dir=tmp_path)


def test_split_with_only_dropped_examples_is_empty(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "s.jsonl", [{"text_a": "a", "label": "-"}])
    spec = spec_for("classification", NLI, path="s.jsonl", drop_labels=["-"])
    with pytest.raises(XstiltsError, match="is empty"):
        load(spec, data_dir=tmp_path)


def test_split_without_sources_is_an_error() -> None:
    spec = spec_for("classification", NLI, path="t.jsonl")
    with pytest.raises(XstiltsError, match="names no data source"):
        load(spec, split="test")


def test_missing_required_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"premise": "p", "hypothesis": "h", "label": 0}])
    spec = spec_for("classification", NLI, path="m.jsonl", columns={"text_a": "sentence1"})
    with pytest.raises(XstiltsError) as err:
        load(spec, data_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}:1: ")
    assert "'sentence1'" in message and "'text_a'" in message
    assert "hypothesis, label, premise" in message  # the columns that do exist


def test_missing_optional_columns_are_fine(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "u.jsonl", [{"text_a": "a"}, {"text_a": "b"}])
    spec = spec_for("classification", NLI, path="u.jsonl")
    loaded = load(spec, data_dir=tmp_path)
    assert loaded.examples["label"] == [-1, -1]
    assert "text_b" not in loaded.examples.column_names


def test_hub_mode_falls_back_to_local_sources(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"text_a": "a", "label": 1}])
    spec = spec_for("classification", NLI, path="t.jsonl")
    assert load(spec, mode="hub", data_dir=tmp_path).examples["label"] == [1]


# ---------------------------------------------------------------------------
# The catalog's local sources against files laid out as the distributions ship them


def test_catalog_mnli_glue_tsv(tmp_path: Path, registry) -> None:
    write_tsv(
        tmp_path / "MNLI" / "train.tsv",
        [
            mnli_row(0, 'He said "stop.', "He spoke.", "entailment", MNLI_TRAIN_HEADER),
            mnli_row(1, "The sky is blue.", "It rains.", "neutral", MNLI_TRAIN_HEADER),
            mnli_row(2, "Cats purr.", "Cats bark.", "contradiction", MNLI_TRAIN_HEADER),
        ],
        header=MNLI_TRAIN_HEADER,
    )
    write_tsv(
        tmp_path / "MNLI" / "dev_matched.tsv",
        [mnli_row(0, "A.", "B.", "neutral", MNLI_DEV_HEADER)],
        header=MNLI_DEV_HEADER,
    )
    train = load(registry.get("mnli"), data_dir=tmp_path)
    assert train.examples["text_a"] == ['He said "stop.', "The sky is blue.", "Cats purr."]
    assert train.examples["text_b"] == ["He spoke.", "It rains.", "Cats bark."]
    assert train.examples["label"] == [0, 1, 2]
    dev = load(registry.get("mnli"), split="validation", data_dir=tmp_path)
    assert dev.examples["label"] == [1]


def test_catalog_snli_jsonl_drops_examples_without_gold_label(tmp_path: Path, registry) -> None:
    def snli(s1: str, s2: str, gold: str, votes: list[str]) -> dict:
        return {
            "annotator_labels": votes,
            "captionID": "3416050480.jpg#4",
            "gold_label": gold,
            "pairID": "3416050480.jpg#4r1n",
            "sentence1": s1,
            "sentence1_binary_parse": "( ... )",
            "sentence1_parse": "(ROOT ...)",
            "sentence2": s2,
            "sentence2_binary_parse": "( ... )",
            "sentence2_parse": "(ROOT ...)",
        }

    write_jsonl(
        tmp_path / "snli_1.0" / "snli_1.0_train.jsonl",
        [
            snli("A person on a horse.", "A person is outdoors.", "entailment", ["entailment"]),
            snli("Two kids.", "Kids play.", "-", ["neutral", "entailment", "contradiction"]),
            snli("A dog runs.", "A cat sleeps.", "contradiction", ["contradiction"]),
        ],
    )
    loaded = load(registry.get("snli"), data_dir=tmp_path)
    assert loaded.dropped == 1
    assert loaded.examples["label"] == [0, 2]
    assert loaded.examples["text_a"] == ["A person on a horse.", "A dog runs."]


def _anli_rows(round_no: int) -> list[dict]:
    """ANLI v1.0 jsonl as released: the premise is in 'context', labels are e/n/c."""
    return [
        {
            "uid": f"r{round_no}-{i}",
            "context": f"Round {round_no} premise {i}.",
            "hypothesis": f"Hypothesis {i}.",
            "label": label,
            "model_label": "n",
            "emturk": False,
            "genre": "wiki",
            "reason": "",
            "tag": "",
        }
        for i, label in enumerate(["e", "n", "c"])
    ]


def _write_anli_plus_train(data_dir: Path) -> None:
    write_jsonl(
        data_dir / "snli_1.0" / "snli_1.0_train.jsonl",
        [
            {"sentence1": "s-a", "sentence2": "s-b", "gold_label": "neutral"},
            {"sentence1": "s-c", "sentence2": "s-d", "gold_label": "-"},
        ],
    )
    write_tsv(
        data_dir / "MNLI" / "train.tsv",
        [mnli_row(0, "m-a", "m-b", "contradiction", MNLI_TRAIN_HEADER)],
        header=MNLI_TRAIN_HEADER,
    )
    for round_no in (1, 2, 3):
        write_jsonl(data_dir / "anli_v1.0" / f"R{round_no}" / "train.jsonl", _anli_rows(round_no))


def test_catalog_anli_plus_reads_original_anli_files(tmp_path: Path, registry) -> None:
    _write_anli_plus_train(tmp_path)
    loaded = load(registry.get("anli_plus"), data_dir=tmp_path)
    assert loaded.dropped == 1
    assert len(loaded.examples) == 1 + 1 + 9
    assert loaded.examples["label"] == [1, 2] + [0, 1, 2] * 3
    assert loaded.examples["text_a"][2] == "Round 1 premise 0."


def test_catalog_xnli_xtreme_headerless_tsv(tmp_path: Path, registry) -> None:
    write_tsv(
        tmp_path / "xnli" / "train-en.tsv",
        [
            ["Conceptually cream skimming has two dimensions .", "Product matters .", "neutral"],
            ['He said "yes .', "He agreed .", "entailment"],
            ["One of our number will carry out your orders .", "Nobody will .", "contradictory"],
        ],
    )
    # XTREME's utils_preprocess.py strips the labels of the test files.
    write_tsv(
        tmp_path / "xnli" / "test-de.tsv", [["Er sagte: „Ja“.", "Er stimmte zu."], ["A", "B"]]
    )
    xnli = registry.get("xnli")
    train = load(xnli, data_dir=tmp_path)
    assert train.examples["label"] == [1, 0, 2]
    assert train.examples["text_a"][1] == 'He said "yes .'
    test = load(xnli, split="test", lang="de", data_dir=tmp_path)
    assert test.examples["text_a"] == ["Er sagte: „Ja“.", "A"]
    assert test.examples["label"] == [-1, -1]
    with pytest.raises(XstiltsError, match=r"xnli/test-fr\.tsv"):
        load(xnli, split="test", lang="fr", data_dir=tmp_path)


def test_catalog_pawsx_xtreme_headerless_tsv(tmp_path: Path, registry) -> None:
    write_tsv(
        tmp_path / "pawsx" / "dev-de.tsv",
        [["Satz eins .", "Satz zwei .", "1"], ["Noch einer .", "Und noch .", "0"]],
    )
    loaded = load(registry.get("pawsx"), split="validation", lang="de", data_dir=tmp_path)
    assert loaded.examples["label"] == [1, 0]
    assert loaded.examples["text_b"] == ["Satz zwei .", "Und noch ."]


XCOPA_ROWS = [
    {"premise": "Ese oli mullikilesse mässitud.", "choice1": "See oli õrn.",
     "choice2": "See oli väike.", "question": "cause", "label": 0, "idx": 0, "changed": False},
    {"premise": "Ma tühjendasin oma taskud.", "choice1": "Ma leidsin pileti tüki.",
     "choice2": "Ma leidsin relva.", "question": "effect", "label": 1, "idx": 1, "changed": False},
]  # fmt: skip


@pytest.mark.parametrize("layout", ["xcopa/test.et.jsonl", "xcopa/et/test.et.jsonl"])
def test_catalog_xcopa_jsonl(tmp_path: Path, registry, layout: str) -> None:
    write_jsonl(tmp_path / layout, XCOPA_ROWS)
    loaded = load(registry.get("xcopa"), split="test", lang="et", data_dir=tmp_path)
    assert loaded.examples["context"] == [r["premise"] for r in XCOPA_ROWS]
    assert loaded.examples["choices"] == [[r["choice1"], r["choice2"]] for r in XCOPA_ROWS]
    assert loaded.examples["question"] == ["What was the cause?", "What was the effect?"]
    assert loaded.examples["label"] == [0, 1]


def test_catalog_xcopa_english_validation_reads_copa(tmp_path: Path, registry) -> None:
    rows = [{**r, "premise": f"en {r['premise']}"} for r in XCOPA_ROWS]
    write_jsonl(tmp_path / "COPA" / "val.jsonl", rows)
    write_jsonl(tmp_path / "xcopa" / "val.et.jsonl", XCOPA_ROWS)
    en = load(registry.get("xcopa"), split="validation", lang="en", data_dir=tmp_path)
    et = load(registry.get("xcopa"), split="validation", lang="et", data_dir=tmp_path)
    assert all(c.startswith("en ") for c in en.examples["context"])
    assert not any(c.startswith("en ") for c in et.examples["context"])


def test_catalog_commonsenseqa_original_jsonl(tmp_path: Path, registry) -> None:
    def row(key: str, texts: list[str]) -> dict:
        return {
            "answerKey": key,
            "id": f"q-{key}",
            "question": {
                "question_concept": "concept",
                "choices": [
                    {"label": lab, "text": t} for lab, t in zip("ABCDE", texts, strict=True)
                ],
                "stem": f"Question with answer {key}?",
            },
        }

    write_jsonl(
        tmp_path / "commonsenseqa" / "dev_rand_split.jsonl",
        [row("E", list("vwxyz")), row("A", ["a1", "a2", "a3", "a4", "a5"])],
    )
    loaded = load(registry.get("commonsenseqa"), split="validation", data_dir=tmp_path)
    assert loaded.examples["label"] == [4, 0]
    assert loaded.examples["choices"][0] == list("vwxyz")
    assert loaded.examples["context"][1] == "Question with answer A?"
    assert loaded.examples["id"] == ["q-E", "q-A"]


def test_catalog_cosmosqa_original_csv(tmp_path: Path, registry) -> None:
    path = tmp_path / "cosmosqa" / "train.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"]
        )
        writer.writerow(
            ["3Q9S", 'Good Old War and "person L": I saw both, then left.', "Why?",
             "None of the above.", "I like music.", "It was late.", "I was tired.", "3"]
        )  # fmt: skip
    [example] = load(registry.get("cosmosqa"), data_dir=tmp_path).examples
    assert example["context"] == 'Good Old War and "person L": I saw both, then left.'
    assert example["question"] == "Why?"
    assert example["choices"] == [
        "None of the above.",
        "I like music.",
        "It was late.",
        "I was tired.",
    ]
    assert example["label"] == 3
    assert example["id"] == "3Q9S"


def test_catalog_hellaswag_original_jsonl(tmp_path: Path, registry) -> None:
    row = {
        "ind": 4,
        "activity_label": "Removing ice from car",
        "ctx_a": "Then, the man writes over the snow covering the window of a car.",
        "ctx_b": "a woman wearing winter clothes",
        "ctx": "Then, the man writes over the snow covering the window of a car. "
        "a woman wearing winter clothes",
        "split": "train",
        "split_type": "indomain",
        "label": 3,
        "endings": ["e0", "e1", "e2", "smiles."],
        "source_id": "activitynet~v_-1IBHYS3L-Y",
    }
    write_jsonl(tmp_path / "hellaswag_train.jsonl", [row])
    [example] = load(registry.get("hellaswag"), data_dir=tmp_path).examples
    # jiant's encoding: ctx_a first; ctx_b opens every ending
    assert example["context"] == row["ctx_a"]
    assert example["choice_prefix"] == row["ctx_b"]
    assert example["choices"] == row["endings"]
    assert example["label"] == 3


def test_catalog_qqp_glue_tsv(tmp_path: Path, registry) -> None:
    write_tsv(
        tmp_path / "QQP" / "train.tsv",
        [
            ["133273", "213221", "213222", "How is the life of a math student?",
             "Which level of prepration is enough?", "0"],
            ["402555", "536040", "536041", "How do I control my horny emotions?",
             "How do you control your horniness?", "1"],
        ],
        header=["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    )  # fmt: skip
    loaded = load(registry.get("qqp"), data_dir=tmp_path)
    assert loaded.examples["label"] == [0, 1]


def test_catalog_sst2_glue_tsv(tmp_path: Path, registry) -> None:
    write_tsv(
        tmp_path / "SST-2" / "train.tsv",
        [
            ["hide new secretions from the parental units ", "0"],
            ["that loves its characters ", "1"],
        ],
        header=["sentence", "label"],
    )
    loaded = load(registry.get("sst2"), data_dir=tmp_path)
    assert loaded.examples["label"] == [0, 1]


SIQA_ROWS = [
    {"context": "Tracy didn't go home that evening and resisted Riley's attacks.",
     "question": "What does Tracy need to do before this?", "answerA": "make a new plan",
     "answerB": "Go home and see Riley", "answerC": "Find somewhere to go"},
    {"context": "Sydney walked past a homeless woman asking for change.",
     "question": "How would you describe Sydney?", "answerA": "sympathetic",
     "answerB": "like a person who was unable to help", "answerC": "incredulous"},
]  # fmt: skip


def test_catalog_siqa_release_with_separate_labels(tmp_path: Path, registry) -> None:
    write_jsonl(tmp_path / "siqa" / "dev.jsonl", SIQA_ROWS)
    (tmp_path / "siqa" / "dev-labels.lst").write_text("3\n1\n")
    loaded = load(registry.get("siqa"), split="validation", data_dir=tmp_path)
    assert loaded.examples["choices"][0] == [
        "make a new plan",
        "Go home and see Riley",
        "Find somewhere to go",
    ]
    assert loaded.examples["question"][1] == "How would you describe Sydney?"
    assert loaded.examples["label"] == [2, 0]  # labels "1".."3" are the 1st..3rd answer


def test_jsonl_labels_refuses_a_label_count_that_differs(tmp_path: Path, registry) -> None:
    write_jsonl(tmp_path / "siqa" / "train.jsonl", SIQA_ROWS)
    (tmp_path / "siqa" / "train-labels.lst").write_text("3\n")
    with pytest.raises(XstiltsError, match=r"train-labels.lst holds 1 labels but .* has 2 rows"):
        load(registry.get("siqa"), data_dir=tmp_path)


def test_catalog_script_datasets_read_the_hub_parquet_copy(registry) -> None:
    for name in ("cosmosqa", "siqa"):
        for split in ("train", "validation"):
            [source] = registry.get(name).splits[split].hub
            assert source.revision == "refs/convert/parquet"
            assert source.describe().endswith("@refs/convert/parquet")


def test_catalog_anli_plus_validates_on_the_five_dev_sets(registry) -> None:
    hub = [s.describe() for s in registry.get("anli_plus").splits["validation"].hub]
    assert hub == [
        "hub:stanfordnlp/snli/validation",
        "hub:nyu-mll/glue/mnli/validation_matched",
        "hub:facebook/anli/plain_text/dev_r1",
        "hub:facebook/anli/plain_text/dev_r2",
        "hub:facebook/anli/plain_text/dev_r3",
    ]
    rounds = [registry.get(f"anli_r{r}") for r in (1, 2, 3)]
    assert {spec.head_name for spec in rounds} == {"nli"} == {registry.get("mnli").head_name}
    assert [spec.splits["validation"].hub[0].split for spec in rounds] == [
        "dev_r1",
        "dev_r2",
        "dev_r3",
    ]


def test_catalog_ccg_is_scored_by_token_accuracy(registry) -> None:
    from xstilts.metrics import get_metric

    metric = get_metric(registry.get("ccg").metric)
    scores = metric.score([["N", "NP", "N"]], [["N", "N", "N"]])
    assert metric.main_key == "token_accuracy"
    assert scores == {"token_accuracy": pytest.approx(200 / 3)}
