"""Task specs, data sources and the task registry (built-in catalog plus user files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from xstilts.errors import XstiltsError
from xstilts.tasks import DataSource, TaskSpec, load_registry
from xstilts.tasks.registry import TASK_PATH_ENV, TaskRegistry, read_task_file

NLI_LABELS = ["entailment", "neutral", "contradiction"]
XNLI_LANGUAGES = [
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
]  # fmt: skip
PAWSX_LANGUAGES = ["de", "en", "es", "fr", "ja", "ko", "zh"]
XCOPA_LANGUAGES = ["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"]


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


@pytest.fixture(scope="module")
def builtin() -> TaskRegistry:
    return load_registry()


def _spec(**splits: object) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "name": "t",
            "family": "test",
            "format": "classification",
            "labels": ["a", "b"],
            "splits": splits,
        }
    )


# ---------------------------------------------------------------------------
# DataSource


def test_for_language_fills_every_string_field() -> None:
    source = DataSource.model_validate(
        {
            "path": ["data/{lang}/dev.{lang}.tsv", "dev-{lang}.tsv"],
            "columns": {"text_a": "s1_{lang}", "choices": ["a_{lang}", "b_{lang}"]},
            "label_map": {"x": "label_{lang}"},
            "value_maps": {"question": {"cause": "why ({lang})?"}},
            "column_names": ["text_{lang}", "label"],
        }
    )
    filled = source.for_language("de")
    assert filled.path == ["data/de/dev.de.tsv", "dev-de.tsv"]
    assert filled.columns == {"text_a": "s1_de", "choices": ["a_de", "b_de"]}
    assert filled.label_map == {"x": "label_de"}
    assert filled.value_maps == {"question": {"cause": "why (de)?"}}
    assert filled.column_names == ["text_de", "label"]
    # The template itself is left untouched.
    assert source.path == ["data/{lang}/dev.{lang}.tsv", "dev-{lang}.tsv"]


def test_for_language_fills_hub_config() -> None:
    source = DataSource(hub="facebook/xnli", config="{lang}", split="test")
    filled = source.for_language("sw")
    assert (filled.hub, filled.config, filled.split) == ("facebook/xnli", "sw", "test")
    assert filled.mode == "hub"
    assert filled.describe() == "hub:facebook/xnli/sw/test"


def test_path_string_becomes_a_list() -> None:
    source = DataSource.model_validate({"path": "train.jsonl"})
    assert source.path == ["train.jsonl"]
    assert source.mode == "local"
    assert source.describe() == "train.jsonl"


@pytest.mark.parametrize(
    "payload",
    [{"hub": "x/y", "path": "a.jsonl"}, {}, {"config": "en", "split": "train"}],
    ids=["both", "neither", "neither-with-extras"],
)
def test_source_needs_exactly_one_of_hub_or_path(payload: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'hub'"):
        DataSource.model_validate(payload)


def test_source_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="colums"):
        DataSource.model_validate({"path": "a.jsonl", "colums": {"text_a": "x"}})


# ---------------------------------------------------------------------------
# TaskSpec


def test_language_specific_sources_win_over_generic_ones() -> None:
    spec = _spec(
        validation={
            "local": [
                {"path": "COPA/val.jsonl", "languages": ["en"]},
                {"path": "xcopa/val.{lang}.jsonl"},
                {"path": "extra/{lang}.jsonl", "languages": ["en", "fr"]},
            ]
        }
    )
    assert [s.path for s in spec.sources("validation", "en", "local")] == [
        ["COPA/val.jsonl"],
        ["extra/en.jsonl"],
    ]
    assert [s.path for s in spec.sources("validation", "fr", "local")] == [["extra/fr.jsonl"]]
    assert [s.path for s in spec.sources("validation", "et", "local")] == [["xcopa/val.et.jsonl"]]


def test_sources_without_a_generic_fallback_are_empty_for_other_languages() -> None:
    spec = _spec(train={"local": [{"path": "en.jsonl", "languages": ["en"]}]})
    assert spec.sources("train", "de", "local") == []
    assert spec.sources("test", "en", "local") == []


def test_sources_fall_back_to_the_other_mode() -> None:
    spec = _spec(train={"local": {"path": "train-{lang}.tsv"}})
    assert [s.path for s in spec.sources("train", "en", "hub")] == [["train-en.tsv"]]
    spec = _spec(train={"hub": {"hub": "org/data", "config": "{lang}"}})
    [source] = spec.sources("train", "de", "local")
    assert source.hub == "org/data" and source.config == "de"


def test_sources_prefer_the_requested_mode() -> None:
    spec = _spec(train={"hub": {"hub": "org/data"}, "local": {"path": "t.jsonl"}})
    assert [s.mode for s in spec.sources("train", "en", "hub")] == ["hub"]
    assert [s.mode for s in spec.sources("train", "en", "local")] == ["local"]


def test_spec_validation() -> None:
    with pytest.raises(ValidationError):
        TaskSpec(name="Bad Name", family="x", format="classification")
    with pytest.raises(ValidationError):
        TaskSpec(name="t", family="x", format="classification", max_length=8)
    with pytest.raises(ValidationError, match="trian"):
        _spec(trian={"local": {"path": "a.jsonl"}})
    spec = TaskSpec(name="t", family="x", format="classification")
    assert spec.head_name == "t"
    assert spec.model_copy(update={"head": "shared"}).head_name == "shared"


# ---------------------------------------------------------------------------
# The built-in catalog


@pytest.mark.parametrize(
    ("name", "family", "fmt"),
    [
        ("mnli", "nli", "classification"),
        ("snli", "nli", "classification"),
        ("anli_plus", "nli", "classification"),
        ("xnli", "nli", "classification"),
        ("qqp", "paraphrase", "classification"),
        ("pawsx", "paraphrase", "classification"),
        ("sst2", "sentiment", "classification"),
        ("hellaswag", "commonsense", "multiple_choice"),
        ("cosmosqa", "commonsense", "multiple_choice"),
        ("commonsenseqa", "commonsense", "multiple_choice"),
        ("xcopa", "commonsense", "multiple_choice"),
    ],
)
def test_builtin_tasks(builtin: TaskRegistry, name: str, family: str, fmt: str) -> None:
    assert name in builtin
    spec = builtin.get(name)
    assert (spec.family, spec.format) == (family, fmt)
    assert spec.origin == "built-in"
    assert spec.base_dir is None
    # Every built-in task can be trained and validated from both the hub and local files.
    for split in ("train", "validation"):
        for mode in ("hub", "local"):
            sources = spec.sources(split, spec.languages[0], mode)
            assert sources and all(s.mode == mode for s in sources), (name, split, mode)


def test_builtin_label_sets(builtin: TaskRegistry) -> None:
    for name in ("mnli", "snli", "anli_plus", "xnli"):
        assert builtin.get(name).labels == NLI_LABELS
        assert builtin.get(name).head_name == "nli"
    assert builtin.get("pawsx").labels == ["0", "1"]
    assert builtin.get("qqp").labels == ["not_duplicate", "duplicate"]
    assert builtin.get("sst2").labels == ["negative", "positive"]
    assert builtin.get("hellaswag").labels == ["0", "1", "2", "3"]
    assert builtin.get("cosmosqa").labels == ["0", "1", "2", "3"]
    assert builtin.get("commonsenseqa").labels == ["A", "B", "C", "D", "E"]
    assert builtin.get("xcopa").labels == ["0", "1"]


def test_builtin_languages(builtin: TaskRegistry) -> None:
    assert builtin.get("xnli").languages == XNLI_LANGUAGES
    assert len(builtin.get("xnli").languages) == 15
    assert builtin.get("pawsx").languages == PAWSX_LANGUAGES
    assert builtin.get("xcopa").languages == XCOPA_LANGUAGES
    assert builtin.get("mnli").languages == ["en"]
    assert "xtreme" in builtin.get("xnli").benchmarks
    assert "xtreme-r" in builtin.get("xcopa").benchmarks


def test_builtin_xnli_sources_per_language(builtin: TaskRegistry) -> None:
    xnli = builtin.get("xnli")
    for lang in XNLI_LANGUAGES:
        [test] = xnli.sources("test", lang, "local")
        assert test.path == [f"xnli/test-{lang}.tsv"]
        assert test.header is False
        # XTREME writes test-{lang}.tsv without the label column; labelled copies
        # (three columns) are read too.
        assert test.column_names == ["text_a", "text_b", "label"]
        assert test.reader_options == {"min_columns": 2}
        [dev] = xnli.sources("validation", lang, "local")
        assert dev.column_names == ["text_a", "text_b", "label"]
        [hub] = xnli.sources("validation", lang, "hub")
        assert (hub.hub, hub.config, hub.split) == ("facebook/xnli", lang, "validation")


def test_builtin_xcopa_english_validation_is_copa(builtin: TaskRegistry) -> None:
    xcopa = builtin.get("xcopa")
    [en] = xcopa.sources("validation", "en", "local")
    # first the name XTREME's download_data.sh leaves, then the original releases'
    assert en.path == ["xcopa/val-en.jsonl", "COPA/val.jsonl", "xcopa/val.en.jsonl"]
    [et] = xcopa.sources("validation", "et", "local")
    assert et.path == ["xcopa/val-et.jsonl", "xcopa/et/val.et.jsonl", "xcopa/val.et.jsonl"]
    [en_hub] = xcopa.sources("validation", "en", "hub")
    assert (en_hub.hub, en_hub.config) == ("aps/super_glue", "copa")
    [et_hub] = xcopa.sources("test", "et", "hub")
    assert (et_hub.hub, et_hub.config, et_hub.split) == ("cambridgeltl/xcopa", "et", "test")


def test_builtin_anli_plus_combines_five_training_sources(builtin: TaskRegistry) -> None:
    spec = builtin.get("anli_plus")
    local = spec.sources("train", "en", "local")
    assert [s.path[0] for s in local] == [
        "snli_1.0/snli_1.0_train.jsonl",
        "MNLI/train.tsv",
        "anli_v1.0/R1/train.jsonl",
        "anli_v1.0/R2/train.jsonl",
        "anli_v1.0/R3/train.jsonl",
    ]
    anli = local[2:]
    for source in anli:
        assert source.label_map == {"e": "entailment", "n": "neutral", "c": "contradiction"}
    assert local[0].drop_labels == ["-"]
    assert len(spec.sources("train", "en", "hub")) == 5


def test_unknown_task_lists_known_ones(builtin: TaskRegistry) -> None:
    with pytest.raises(XstiltsError, match=r"unknown task 'xnlii'.*known tasks: .*xnli"):
        builtin.get("xnlii")


def test_registry_iterates_sorted(builtin: TaskRegistry) -> None:
    names = [spec.name for spec in builtin]
    assert names == sorted(names)
    assert len(builtin) == len(names) >= 11


# ---------------------------------------------------------------------------
# User task files

USER_TASK = """\
tasks:
  - name: my_nli
    family: nli
    format: classification
    labels: [entailment, neutral, contradiction]
    languages: [en, de]
    splits:
      train:
        local: {path: my/train.jsonl}
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_user_task_file_loads_into_the_registry(tmp_path: Path) -> None:
    task_file = _write(tmp_path / "tasks" / "mine.yaml", USER_TASK)
    registry = load_registry([task_file])
    spec = registry.get("my_nli")
    assert spec.origin == str(task_file)
    assert spec.base_dir == task_file.parent
    assert spec.languages == ["en", "de"]
    assert "xnli" in registry  # built-ins stay
    assert len(registry) == len(load_registry()) + 1


def test_user_task_file_forms(tmp_path: Path) -> None:
    single = _write(tmp_path / "single.yaml", "name: one\nfamily: x\nformat: classification\n")
    listed = _write(
        tmp_path / "listed.yaml",
        "- {name: two, family: x, format: classification}\n"
        "- {name: three, family: x, format: multiple_choice}\n",
    )
    assert [s.name for s in read_task_file(single)] == ["one"]
    assert [s.name for s in read_task_file(listed)] == ["two", "three"]


def test_user_task_folder_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "folder"
    _write(folder / "a.yaml", "name: from_folder\nfamily: x\nformat: classification\n")
    _write(folder / "ignored.txt", "not: a task")
    env_file = _write(tmp_path / "env.yaml", "name: from_env\nfamily: x\nformat: classification\n")
    monkeypatch.setenv(TASK_PATH_ENV, str(env_file))
    registry = load_registry([folder])
    assert "from_folder" in registry
    assert "from_env" in registry


def test_user_file_may_redefine_a_builtin(tmp_path: Path) -> None:
    task_file = _write(
        tmp_path / "xnli.yaml",
        "name: xnli\nfamily: nli\nformat: classification\n"
        "labels: [entailment, neutral, contradiction]\nlanguages: [en, de]\n",
    )
    registry = load_registry([task_file])
    spec = registry.get("xnli")
    assert spec.languages == ["en", "de"]
    assert spec.origin == str(task_file)
    assert spec.splits == {}


def test_duplicate_task_across_user_files_is_an_error(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", USER_TASK)
    second = _write(tmp_path / "b.yaml", USER_TASK)
    with pytest.raises(XstiltsError) as err:
        load_registry([first, second])
    message = str(err.value)
    assert "my_nli" in message
    assert str(first) in message and str(second) in message


def test_redefining_a_builtin_twice_is_an_error(tmp_path: Path) -> None:
    text = "name: mnli\nfamily: nli\nformat: classification\n"
    first = _write(tmp_path / "a.yaml", text)
    second = _write(tmp_path / "b.yaml", text)
    with pytest.raises(XstiltsError, match="already defined"):
        load_registry([first, second])


def test_invalid_yaml_error_names_the_file_and_line(tmp_path: Path) -> None:
    task_file = _write(
        tmp_path / "broken.yaml", "name: broken\nfamily: x\nlabels: [a, b\nformat: y\n"
    )
    with pytest.raises(XstiltsError, match="not valid YAML") as err:
        load_registry([task_file])
    assert str(err.value).startswith(f"{task_file}:")
    line = int(str(err.value).removeprefix(f"{task_file}:").split(":")[0])
    assert 3 <= line <= 4


def test_invalid_spec_error_names_file_task_and_key(tmp_path: Path) -> None:
    task_file = _write(
        tmp_path / "bad.yaml", "name: bad\nfamily: x\nformat: classification\nepochs: -1\n"
    )
    with pytest.raises(XstiltsError) as err:
        load_registry([task_file])
    message = str(err.value)
    assert str(task_file) in message
    assert "task 'bad'" in message
    assert "key 'epochs'" in message


def test_task_entry_must_be_a_mapping(tmp_path: Path) -> None:
    task_file = _write(tmp_path / "bad.yaml", "tasks:\n  - just a string\n")
    with pytest.raises(XstiltsError, match="mapping"):
        read_task_file(task_file)


def test_missing_task_file(tmp_path: Path) -> None:
    with pytest.raises(XstiltsError, match="task file not found"):
        load_registry([tmp_path / "nope.yaml"])
