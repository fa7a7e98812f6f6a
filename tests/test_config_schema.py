"""The config's JSON Schema (xstilts config schema) and xstilts config show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from tests.configs import write_config
from xstilts.cli import app
from xstilts.config import MADX_LEARNING_RATE
from xstilts.config_schema import PARTIAL, config_key_paths, config_keys, config_schema
from xstilts.config_show import show_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(
    [*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs" / "studies").glob("*.yaml")]
)
runner = CliRunner()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, payload: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(payload)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_schema_accepts_every_shipped_config(validator, path: Path) -> None:
    payload = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _errors(validator, payload) == []


def test_the_schema_rejects_what_xstilts_rejects(validator) -> None:
    experiment = {"target": {"task": "xnli", "training": {"epochs": 2}}}
    assert _errors(validator, experiment) == []
    assert _errors(validator, {"target": {"task": "xnli", "trainng": {}}})  # a typo
    assert _errors(validator, {"target": {"task": "xnli"}, "seed": "one"})
    assert _errors(validator, {"model": {"name": "x"}})  # no target
    assert _errors(validator, {**experiment, "runtime": {"log_with": ["tensorbored"]}})
    # one item for a list, as the validators take it
    assert _errors(validator, {"target": {"task": "x"}, "intermediate": {"tasks": "mnli"}}) == []
    grid = {"grid": {"intermediate": {"baseline": None}, "targets": ["xnli"]}}
    assert _errors(validator, grid) == []
    # a grid's merged sections are partial experiment configs: no target needed, keys checked
    assert _errors(validator, {**grid, "base": {"target": {"training": {"epochs": 1}}}}) == []
    assert _errors(validator, {**grid, "base": {"target": {"trainng": {}}}})
    option = {"nli": {"training": {"epochs": 1}}}  # tasks may come from base
    assert _errors(validator, {"grid": {**grid["grid"], "intermediate": option}}) == []
    scales = {"cpu": {"grid": {"seeds": [1]}, "base": {"model": {"nme": "x"}}}}
    assert _errors(validator, {**grid, "scales": scales})


def _schema_paths(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> list[str]:
    """Every property path under ``node``, walking the schema itself: a key's own
    properties, those of each list item ([]) and of each mapping value (*). Sections of
    experiment keys a grid merges (partial definitions) are one key each."""

    def resolved(item: dict[str, Any]) -> dict[str, Any] | None:
        if "$ref" in item:
            name = item["$ref"].rsplit("/", 1)[-1]
            return None if name.startswith(PARTIAL) else schema["$defs"][name]
        for option in item.get("anyOf", []):
            found = resolved(option)
            if found is not None and "properties" in found:
                return found
        return item if "properties" in item else None

    paths = []
    for key, prop in node["properties"].items():
        path = f"{prefix}{key}"
        paths.append(path)
        direct = resolved(prop)
        if direct is not None:
            paths += _schema_paths(schema, direct, f"{path}.")
            continue
        for part, joiner in (("items", "[]."), ("additionalProperties", ".*.")):
            inner = prop.get(part)
            found = resolved(inner) if isinstance(inner, dict) else None
            if found is not None:
                paths += _schema_paths(schema, found, f"{path}{joiner}")
    return paths


@pytest.mark.parametrize(
    ("kind", "definition"), [("experiment", "ExperimentConfig"), ("grid", "GridConfig")]
)
def test_the_schema_lists_exactly_the_config_keys(kind, definition) -> None:
    schema = config_schema()
    found = _schema_paths(schema, schema["$defs"][definition])
    assert sorted(found) == sorted(config_key_paths(kind))
    assert len(found) == len(set(found))
    paths = config_key_paths(kind)
    if kind == "experiment":
        for expected in (
            "target.training.learning_rate",
            "intermediate.task_settings.*.batch_size",
            "target.stages[].training.epochs",
            "target.training.adversarial.lambda",  # the key as written, not the field
        ):
            assert expected in paths
    else:
        assert {"base", "grid.intermediate", "report.comparisons[].against"} <= set(paths)


def test_every_key_has_a_description_and_its_default() -> None:
    schema = config_schema()
    for kind in ("experiment", "grid"):
        for key in config_keys(kind):
            assert key.description, key.path
    # the schema carries defaults, also those of default factories
    training = schema["$defs"]["TrainingConfig"]["properties"]
    assert training["learning_rate"]["default"] == 1e-5
    assert training["learning_rate"]["description"]
    grid_spec = schema["$defs"]["GridSpec"]["properties"]
    assert grid_spec["seeds"]["default"] == [42]
    madx = schema["$defs"]["LanguageAdaptersConfig"]["properties"]["training"]
    assert madx["default"] == {"learning_rate": MADX_LEARNING_RATE}
    keys = {key.path: key for key in config_keys()}
    assert keys["seed"].default == 42 and not keys["seed"].required
    assert keys["target.task"].required
    assert keys["runtime.mixed_precision"].type == '"no" | "bf16" | "fp16"'


def test_config_schema_command_prints_the_schema() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == config_schema()


# -- xstilts config show ------------------------------------------------------------------


def _xnli_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "xnli.yaml",
        {
            "profile": "xtreme",
            "model": {"tiny": {}},
            "target": {"task": "xnli", "training": {"learning_rate": 2e-5}},
        },
    )


def test_show_says_where_each_value_comes_from(tmp_path) -> None:
    shown = show_config(_xnli_config(tmp_path), ["seed=3"])
    assert shown.note is None
    sources = {value.key: (value.value, value.source) for value in shown.values}
    assert sources["target.training.learning_rate"] == (2e-5, "file")
    assert sources["seed"] == (3, "--set")
    # XTREME's train_xnli.sh: 5 epochs, 128 tokens (the profile); the batch size is the spec's
    assert sources["target.training.epochs"] == (5, "profile xtreme")
    assert sources["target.training.max_length"] == (128, "profile xtreme")
    assert sources["target.training.batch_size"][1] == "task xnli"
    assert sources["evaluation.languages"][1] == "task xnli"
    assert "en" in sources["evaluation.languages"][0]
    assert sources["target.training.warmup_fraction"] == (0.1, "default")
    assert sources["model.tiny.hidden_size"] == (32, "default")
    # an override of a key the file sets wins
    again = show_config(_xnli_config(tmp_path), {"target.training.learning_rate": 3e-5})
    assert again.get("target.training.learning_rate").source == "--set"
    assert again.get("target.training.learning_rate").value == 3e-5


def test_config_show_command(tmp_path) -> None:
    config = _xnli_config(tmp_path)
    result = runner.invoke(app, ["config", "show", str(config), "--set", "seed=3", "--json"])
    assert result.exit_code == 0, result.output
    values = {v["key"]: v for v in json.loads(result.stdout)["values"]}
    assert values["seed"] == {"key": "seed", "value": 3, "source": "--set"}
    assert values["target.training.epochs"]["source"] == "profile xtreme"
    text = runner.invoke(app, ["config", "show", str(config)])
    assert text.exit_code == 0, text.output
    lines = {line.split(":")[0]: line for line in text.stdout.splitlines()}
    assert lines["target.training.learning_rate"].endswith("# file")
    assert lines["target.training.max_length"].endswith("# profile xtreme")
    bad = runner.invoke(app, ["config", "show", str(config), "--set", "seed"])
    assert bad.exit_code == 2 and "expected key=value" in bad.output


def test_show_without_its_tasks_keeps_the_defaults_and_says_why(tmp_path) -> None:
    config = write_config(
        tmp_path / "madx.yaml",
        {
            "model": {"tiny": {}},
            "target": {"task": "no_such_task", "adapters": {"kind": "seq_bn"}},
            "language_adapters": {"task": "wiki_mlm", "training": {"epochs": 1}},
        },
    )
    shown = show_config(config)
    assert shown.note is not None and "no_such_task" in shown.note
    # MAD-X's learning rate is the section's default, not a value the user set
    rate = shown.get("language_adapters.training.learning_rate")
    assert (rate.value, rate.source) == (MADX_LEARNING_RATE, "default")
    assert shown.get("language_adapters.training.epochs").source == "file"


def test_show_a_grid_with_a_scale(tmp_path) -> None:
    config = write_config(
        tmp_path / "grid.yaml",
        {
            "name": "study",
            "grid": {"seeds": [1, 2, 3], "intermediate": {"baseline": None}, "targets": ["xnli"]},
            "base": {"target": {"training": {"epochs": 2}}},
            "scales": {"cpu": {"grid": {"seeds": [1]}}},
        },
    )
    shown = show_config(config, ["scale=cpu"])
    assert shown.kind == "grid"
    assert (shown.get("grid.seeds").value, shown.get("grid.seeds").source) == ([1], "scale cpu")
    assert shown.get("name").value == "study-cpu"
    assert shown.get("base.target.training.epochs").source == "file"
    assert shown.get("scale").source == "--set"
    assert shown.get("grid.max_parallel").source == "default"
