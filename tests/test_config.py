"""Experiment config: parsing, error messages, --set overrides and the config hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from xstilts.config import (
    ExperimentConfig,
    apply_override,
    config_hash,
    load_config,
    parse_config,
    semantic_dump,
)
from xstilts.errors import XstiltsError


def minimal(**extra: Any) -> dict[str, Any]:
    return {"target": {"task": "xnli"}, **extra}


def error_of(payload: dict[str, Any]) -> str:
    with pytest.raises(XstiltsError) as err:
        parse_config(payload, source="cfg.yaml")
    message = str(err.value)
    assert message.startswith("cfg.yaml: ")
    return message


def test_minimal_config_defaults() -> None:
    config = parse_config(minimal())
    assert config.target.task == "xnli"
    assert config.intermediate is None
    assert config.seed == 42
    assert config.data.source == "hub"
    assert config.evaluation.split == "test"
    assert config.target.training.batch_size is None
    assert config.model.tiny is None


def test_intermediate_task_string_becomes_list() -> None:
    config = parse_config(minimal(intermediate={"tasks": "mnli"}))
    assert config.intermediate is not None
    assert config.intermediate.tasks == ["mnli"]
    with pytest.raises(XstiltsError, match=r"intermediate\.tasks"):
        parse_config(minimal(intermediate={"tasks": []}))


def test_unknown_nested_key_names_path_and_allowed_keys() -> None:
    message = error_of({"target": {"task": "xnli", "trainng": {"epochs": 2}}})
    assert "'target.trainng'" in message
    allowed = message.split("allowed keys here:")[1]
    assert [k.strip() for k in allowed.split(",")] == ["adapters", "stages", "task", "training"]


def test_unknown_key_deeper_and_in_optional_sections() -> None:
    message = error_of({"target": {"task": "xnli", "training": {"learning_rat": 1e-5}}})
    assert "'target.training.learning_rat'" in message
    assert "learning_rate" in message and "warmup_fraction" in message
    message = error_of(minimal(intermediate={"tasks": ["mnli"], "training": {"epoch": 1}}))
    assert "'intermediate.training.epoch'" in message and "epochs" in message
    message = error_of(minimal(model={"tiny": {"hidden": 16}}))
    assert "'model.tiny.hidden'" in message and "hidden_size" in message


def test_unknown_top_level_key() -> None:
    message = error_of(minimal(modle={"name": "x"}))
    assert "unknown key 'modle'" in message
    for key in ("model", "target", "intermediate", "evaluation", "data", "runtime", "seed"):
        assert key in message


@pytest.mark.parametrize(
    ("payload", "key", "shown"),
    [
        (minimal(seed="abc"), "'seed'", '"abc"'),
        (
            {"target": {"task": "xnli", "training": {"learning_rate": -1}}},
            "'target.training.learning_rate'",
            "-1",
        ),
        (minimal(evaluation={"split": "train"}), "'evaluation.split'", '"train"'),
        (minimal(runtime={"mixed_precision": "fp8"}), "'runtime.mixed_precision'", '"fp8"'),
    ],
)
def test_wrong_type_names_key_and_value(payload: dict, key: str, shown: str) -> None:
    message = error_of(payload)
    assert f"key {key} has value {shown}" in message


def test_missing_target() -> None:
    assert "missing required key 'target'" in error_of({"seed": 1})
    assert "missing required key 'target.task'" in error_of({"target": {}})


def test_load_config_from_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: demo\ntarget:\n  task: xnli\n  training: {epochs: 3}\n", encoding="utf-8"
    )
    config = load_config(
        path,
        [
            "target.training.epochs=2",
            "target.training.learning_rate=1e-5",
            "evaluation.languages=[de, fr]",
            "intermediate.tasks=mnli",
            "model.tiny.hidden_size=16",
            "runtime.cpu=true",
        ],
    )
    assert config.name == "demo"
    assert config.target.training.epochs == 2
    assert config.target.training.learning_rate == 1e-5
    assert config.evaluation.languages == ["de", "fr"]
    assert config.intermediate is not None and config.intermediate.tasks == ["mnli"]
    assert config.model.tiny is not None and config.model.tiny.hidden_size == 16
    assert config.runtime.cpu is True


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(XstiltsError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("target:\n  task: [xnli\n", encoding="utf-8")
    with pytest.raises(XstiltsError, match=f"^{path}:\\d+: not valid YAML"):
        load_config(path)
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(XstiltsError, match="mapping"):
        load_config(path)
    path.write_text("target: {task: xnli}\nseed: x\n", encoding="utf-8")
    with pytest.raises(XstiltsError, match=f"^{path}: key 'seed'"):
        load_config(path)
    # An override that breaks validation is reported against the file too.
    path.write_text("target: {task: xnli}\n", encoding="utf-8")
    with pytest.raises(XstiltsError, match=r"'target\.training\.epochz'"):
        load_config(path, ["target.training.epochz=1"])


def test_apply_override_nested_and_typed() -> None:
    payload: dict[str, Any] = {"target": {"task": "xnli"}}
    apply_override(payload, "target.training.epochs=2")
    apply_override(payload, "target.training.warmup_fraction=0.06")
    apply_override(payload, "seed=7")
    apply_override(payload, "runtime.cpu=yes")
    apply_override(payload, "evaluation.languages=[de, 'fr']")
    apply_override(payload, "name=")
    apply_override(payload, "data.data_dir = /tmp/data")
    apply_override(payload, "model.name=org/model=v2")
    assert payload == {
        "target": {"task": "xnli", "training": {"epochs": 2, "warmup_fraction": 0.06}},
        "seed": 7,
        "runtime": {"cpu": True},
        "evaluation": {"languages": ["de", "fr"]},
        "name": None,
        "data": {"data_dir": "/tmp/data"},
        "model": {"name": "org/model=v2"},
    }


def test_apply_override_replaces_existing_value() -> None:
    payload: dict[str, Any] = {"target": {"task": "xnli", "training": {"epochs": 3}}}
    apply_override(payload, "target.task=pawsx")
    apply_override(payload, "target.training.epochs=1.5")
    assert payload == {"target": {"task": "pawsx", "training": {"epochs": 1.5}}}


def test_apply_override_unparsable_yaml_is_kept_as_text() -> None:
    payload: dict[str, Any] = {}
    apply_override(payload, "name=[unclosed")
    assert payload == {"name": "[unclosed"}


@pytest.mark.parametrize("item", ["target.task", "=3", " =x", ""])
def test_bad_override_without_key_value(item: str) -> None:
    with pytest.raises(XstiltsError, match="expected key=value"):
        apply_override({}, item)


def test_override_through_a_value_is_an_error() -> None:
    with pytest.raises(XstiltsError, match="'target' holds a value"):
        apply_override({"target": "xnli"}, "target.task=pawsx")


# ---------------------------------------------------------------------------
# config hash


def _hash(payload: dict[str, Any]) -> str:
    return config_hash(semantic_dump(parse_config(payload)))


def test_config_hash_is_stable_and_order_independent() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({"a": 1})) == 12
    base = minimal(seed=3, target={"task": "xnli", "training": {"epochs": 2}})
    assert _hash(base) == _hash(dict(reversed(list(base.items()))))
    # Defaults written out or left implicit are the same experiment.
    assert _hash(base) == _hash({**base, "runtime": {"mixed_precision": "no"}})


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 4},
        {"target": {"task": "xnli", "training": {"epochs": 3}}},
        {"target": {"task": "pawsx", "training": {"epochs": 2}}},
        {"model": {"tiny": {}}},
        {"intermediate": {"tasks": ["mnli"]}},
        {"evaluation": {"languages": ["de"]}},
        {"data": {"source": "local"}},
    ],
)
def test_config_hash_changes_with_semantic_keys(change: dict) -> None:
    base = minimal(seed=3, target={"task": "xnli", "training": {"epochs": 2}})
    assert _hash({**base, **change}) != _hash(base)


def test_config_hash_ignores_name_and_cache_dir() -> None:
    base = minimal(data={"source": "local", "data_dir": "/data"})
    renamed = {**base, "name": "another-name"}
    cached = {**base, "data": {**base["data"], "cache_dir": "/elsewhere/cache"}}
    assert _hash(renamed) == _hash(base)
    assert _hash(cached) == _hash(base)


def test_semantic_dump_leaves_the_config_alone() -> None:
    config = parse_config(minimal(name="x", data={"cache_dir": "/c"}))
    dumped = semantic_dump(config)
    assert "name" not in dumped
    assert "cache_dir" not in dumped["data"]
    assert dumped["target"]["task"] == "xnli"
    assert config.name == "x"
    assert config.data.cache_dir == Path("/c")


def test_to_yaml_round_trip() -> None:
    config = parse_config(
        minimal(model={"tiny": {"hidden_size": 16}}, data={"data_dir": "/d"}, seed=9)
    )
    again = parse_config(yaml.safe_load(config.to_yaml()))
    assert isinstance(again, ExperimentConfig)
    assert again == config
    assert config_hash(semantic_dump(again)) == config_hash(semantic_dump(config))
