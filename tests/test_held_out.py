"""No test example influences a choice: validation never reads a task's test data,
a hashed holdout splits one source into disjoint parts, and a missing validation
split is an error rather than a quiet fallback to test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xstilts.config import parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment import results_db
from xstilts.experiment.resolve import resolve
from xstilts.experiment.summaries import validation_score
from xstilts.formats import get_format
from xstilts.samples import stand_in_tasks
from xstilts.tasks import TaskSpec, load_registry
from xstilts.tasks.loading import load_split
from xstilts.tasks.registry import TASK_PATH_ENV
from xstilts.tasks.spec import DataSource, Holdout

SPLIT_PAIRS = [("validation", "test"), ("train", "test"), ("train", "validation")]


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


def _every_task() -> list[TaskSpec]:
    """The built-in catalog and the CPU-scale stand-ins."""
    stand_ins = [TaskSpec.model_validate(task) for task in stand_in_tasks()["tasks"]]
    return [*load_registry(), *stand_ins]


@pytest.mark.parametrize("spec", _every_task(), ids=lambda spec: spec.name)
def test_no_task_reads_one_splits_data_for_another(spec: TaskSpec) -> None:
    """Per language and source mode: the hub split, or any candidate file, that two
    splits read is shared only under complementary holdouts (TyDiQA-GoldP: its dev set
    is its test set, so validation is held out of its training set)."""
    languages = sorted({*spec.languages, *spec.train_languages})
    shared = [
        f"{first}/{second} {mode} {lang}: {both}"
        for first, second in SPLIT_PAIRS
        for mode in ("hub", "local")
        for lang in languages
        for both in spec.shared_data(first, second, lang, mode)
    ]
    assert shared == []


def test_the_catalog_holds_out_tydiqa_validation() -> None:
    tydiqa = load_registry().get("tydiqa")
    [validation] = tydiqa.sources("validation", "ar", "hub")
    [test] = tydiqa.sources("test", "ar", "hub")
    assert (validation.split, test.split) == ("train", "validation")
    assert validation.holdout == Holdout(fraction=0.1, part="held_out")


def test_shared_data_is_found() -> None:
    same = DataSource(path=["a.json", "b.json"])
    assert same.may_overlap(DataSource(path="b.json"))
    assert not same.may_overlap(DataSource(path="c.json"))
    assert DataSource(hub="x", split="dev").may_overlap(DataSource(hub="x", split="dev"))
    assert not DataSource(hub="x", split="dev").may_overlap(DataSource(hub="x", split="test"))
    held, rest = (Holdout(fraction=0.2, part=part) for part in ("held_out", "rest"))
    assert not DataSource(path="a", holdout=held).may_overlap(DataSource(path="a", holdout=rest))
    assert DataSource(path="a", holdout=held).may_overlap(DataSource(path="a", holdout=held))
    other = Holdout(fraction=0.3, part="rest")  # another fraction: parts overlap
    assert DataSource(path="a", holdout=held).may_overlap(DataSource(path="a", holdout=other))
    assert DataSource(path="a", holdout=held).may_overlap(DataSource(path="a"))
    assert not DataSource(path="a", where={"s": "dev"}).may_overlap(
        DataSource(path="a", where={"s": "test"})
    )


# ---------------------------------------------------------------------------
# The holdout


def test_a_holdout_partitions_the_ids_deterministically() -> None:
    ids = [f"q{i}" for i in range(2000)]
    held = [i for i in ids if Holdout(fraction=0.1, part="held_out").keeps(i)]
    rest = [i for i in ids if Holdout(fraction=0.1, part="rest").keeps(i)]
    assert sorted(held + rest) == sorted(ids) and not set(held) & set(rest)
    assert 150 <= len(held) <= 250
    assert held == [i for i in ids if Holdout(fraction=0.1, part="held_out").keeps(i)]
    wider = {i for i in ids if Holdout(fraction=0.2, part="held_out").keeps(i)}
    assert set(held) <= wider  # a larger share holds out a superset


def test_an_unset_holdout_leaves_dumps_and_run_ids_alone() -> None:
    """Sources written before the key dump as they did (run ids hash the dump)."""
    plain = DataSource(path="a.json")
    assert "holdout" not in plain.model_dump()
    assert "holdout" not in plain.for_language("de").model_dump()
    held = DataSource(path="a.json", holdout={"fraction": 0.5, "part": "rest"})
    assert held.model_dump()["holdout"] == {"fraction": 0.5, "part": "rest"}
    assert held.for_language("de").holdout == held.holdout
    with pytest.raises(ValueError, match="fraction"):
        DataSource(path="a.json", holdout={"fraction": 1.0, "part": "rest"})


def _task(tmp_path: Path, splits: dict, name: str = "pairs") -> TaskSpec:
    spec = {
        "name": name,
        "family": "paraphrase",
        "format": "classification",
        "labels": ["0", "1"],
        "languages": ["en", "de"],
        "splits": splits,
    }
    return TaskSpec.model_validate({**spec, "base_dir": str(tmp_path)})


def _rows(tmp_path: Path, name: str, count: int) -> str:
    rows = [
        {"id": f"{name}-{i}", "text_a": f"{name} {i}", "label": str(i % 2)} for i in range(count)
    ]
    (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return name


def _load(spec: TaskSpec, split: str, lang: str = "en") -> list[str]:
    fmt = get_format(spec.format)
    loaded = load_split(
        spec, split, lang, fields=fmt.fields, check_row=fmt.check_row(spec), mode="local"
    )
    return list(loaded.examples["id"])


def test_one_file_serves_train_and_validation_without_overlap(tmp_path: Path) -> None:
    path = _rows(tmp_path, "train.jsonl", 300)
    part = {"fraction": 0.25}
    spec = _task(
        tmp_path,
        {
            "train": {"local": {"path": path, "holdout": {**part, "part": "rest"}}},
            "validation": {"local": {"path": path, "holdout": {**part, "part": "held_out"}}},
        },
    )
    train, validation = _load(spec, "train"), _load(spec, "validation")
    assert not set(train) & set(validation) and len(train) + len(validation) == 300
    assert 45 <= len(validation) <= 105


def test_a_missing_validation_split_is_never_read_from_test(tmp_path: Path) -> None:
    spec = _task(tmp_path, {"test": {"local": {"path": _rows(tmp_path, "test.jsonl", 4)}}})
    assert _load(spec, "test") == [f"test.jsonl-{i}" for i in range(4)]
    with pytest.raises(XstiltsError, match=r"split 'validation', language 'en'.*no data source"):
        _load(spec, "validation")


# ---------------------------------------------------------------------------
# A run refuses a target that would validate on its test data


def _resolve(tmp_path: Path, splits: dict, **evaluation) -> None:
    task = {
        "name": "leaky",
        "family": "paraphrase",
        "format": "classification",
        "labels": ["0", "1"],
        "languages": ["en", "de"],
        "splits": splits,
    }
    task_file = tmp_path / "tasks.yaml"
    task_file.write_text(yaml.safe_dump({"tasks": [task]}))
    payload = {
        "model": {"tiny": {}},
        "target": {"task": "leaky"},
        "evaluation": evaluation,
        "data": {"source": "local", "task_files": [str(task_file)]},
    }
    resolve(parse_config(payload, source="test"), planning=True)


def test_a_target_validating_on_its_test_data_is_refused(tmp_path: Path) -> None:
    same = {"local": {"path": "dev-{lang}.jsonl"}}
    splits = {"train": {"local": {"path": "train.jsonl"}}, "validation": same, "test": same}
    with pytest.raises(XstiltsError) as caught:
        _resolve(tmp_path, splits)
    message = str(caught.value)
    assert message.startswith("task 'leaky' (")
    assert "validation and test splits in 'en' read the same data (dev-en.jsonl" in message
    _resolve(tmp_path, splits, languages=["de"])  # English (validation) not scored on test
    _resolve(tmp_path, splits, split="validation")  # evaluating validation chooses nothing
    held = {"path": "dev-{lang}.jsonl", "holdout": {"fraction": 0.5, "part": "held_out"}}
    rest = {**held, "holdout": {"fraction": 0.5, "part": "rest"}}
    splits |= {"validation": {"local": held}, "test": {"local": rest}}
    _resolve(tmp_path, splits)


def test_the_ud_pos_stand_in_validates_and_tests_on_disjoint_sentences(stand_ins) -> None:
    data_dir, task_file = stand_ins
    spec = load_registry([task_file]).get("ud_pos")
    fmt = get_format(spec.format)

    def ids(split: str, lang: str) -> list[str]:
        loaded = load_split(
            spec, split, lang, fields=fmt.fields, check_row=fmt.check_row(spec),
            mode="local", data_dir=data_dir,
        )  # fmt: skip
        return list(loaded.examples["id"])

    validation, test, train = ids("validation", "en"), ids("test", "en"), ids("train", "en")
    assert (len(train), len(validation), len(test)) == (1600, 178, 223)
    assert not set(validation) & set(test) and not set(train) & set(validation + test)
    assert not set(ids("test", "de")) & set(validation)


# ---------------------------------------------------------------------------
# The validation score of a run


def test_bucc_records_its_mean_dev_f1_as_the_validation_score() -> None:
    scores = {
        "de": {"f1": 10.0, "calibration": {"threshold": 1.1, "dev_f1": 80.0}},
        "fr": {"f1": 20.0, "calibration": {"threshold": 1.2, "dev_f1": 70.0}},
    }
    value, source = validation_score(None, scores)
    assert value == pytest.approx(75.0) and "dev F1" in source and "2 languages" in source
    assert validation_score(None, {"de": {"accuracy": 90.0}}) == (None, None)  # Tatoeba
    assert validation_score({"best_score": 61.0}, scores)[0] == 61.0
    rows = results_db.result_rows(
        {"run_id": "r", "target_task": "bucc2018", "metric": "f1", "validation_score": value,
         "languages": scores}
    )  # fmt: skip
    assert {row["validation_score"] for row in rows} == {75.0}
    # results written before validation_score: target training's best score
    old = {"run_id": "r", "target_task": "xnli", "training": {"best_score": 5.0}, "languages": {}}
    assert results_db._validation_score(old) == 5.0
