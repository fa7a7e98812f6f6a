"""The config's JSON Schema and its list of keys, both generated from the pydantic models.

One schema takes either kind of config, as ``xstilts run`` does: with a ``grid`` key a
grid config, else an experiment config. The experiment keys a grid merges into its runs
(``base``, ``grid.option_settings``, ``grid.target_settings``, ``grid.intermediate``,
``scales``) are checked as partial sections: every key known, none required.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticUndefined

from xstilts.config import ExperimentConfig
from xstilts.experiment.grid_config import GridConfig

ConfigKind = Literal["experiment", "grid"]
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PARTIAL = "Partial"
"""Prefix of the schema's definitions of partial sections (no key required)."""
MAPPING_KEY = "*"
"""In a key path: any key of a mapping (a task name, an option label)."""
LIST_ITEM = "[]"
"""In a key path: each item of a list."""


@dataclass(frozen=True)
class ConfigKey:
    """One key a config may hold."""

    path: str
    """Dotted path: ``target.training.epochs``; ``*`` any key of a mapping, ``[]`` each
    item of a list (``target.stages[].task``)."""
    type: str
    """The values it takes, e.g. ``int | null``, ``"no" | "bf16" | "fp16"``, ``section``."""
    description: str
    default: Any
    """The value when the key is left out (a section's: the keys set in it); None with
    ``required``."""
    required: bool
    """Whether its section must give it."""
    owner: type[BaseModel]
    """The model that declares the key (``TrainingConfig`` for ``target.training.epochs``)."""
    field: FieldInfo
    """The pydantic field behind the key: its annotation, constraints and default."""


def root_model(kind: ConfigKind) -> type[BaseModel]:
    return ExperimentConfig if kind == "experiment" else GridConfig


def config_keys(kind: ConfigKind = "experiment") -> list[ConfigKey]:
    """Every key an experiment (or grid) config accepts, sections first, in model order.

    A grid's sections of experiment keys (``base``, ``grid.option_settings``, ...) are
    one key each: they take the keys of an experiment config.
    """
    keys: list[ConfigKey] = []
    _collect(root_model(kind), "", keys)
    return keys


def config_key_paths(kind: ConfigKind = "experiment") -> list[str]:
    """The dotted path of every key `config_keys` lists."""
    return [key.path for key in config_keys(kind)]


def _collect(model: type[BaseModel], prefix: str, keys: list[ConfigKey]) -> None:
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        keys.append(
            ConfigKey(
                path,
                _type_name(field.annotation),
                field.description or "",
                None if field.is_required() else field_default(field),
                field.is_required(),
                owner=model,
                field=field,
            )
        )
        nested = _nested_model(field.annotation)
        if nested is not None:
            sub, suffix = nested
            _collect(sub, f"{path}{suffix}.", keys)


def _nested_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field's values hold, and how a path reaches it: '' directly (or
    optional), '[]' through a list, '.*' through a mapping."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [n for n in (_nested_model(a) for a in args) if n is not None]
        return found[0] if len(found) == 1 else None
    if origin is list and args:
        inner = _nested_model(args[0])
        return (inner[0], LIST_ITEM) if inner and inner[1] == "" else None
    if origin is dict and len(args) == 2:
        inner = _nested_model(args[1])
        return (inner[0], f".{MAPPING_KEY}") if inner and inner[1] == "" else None
    return None


def field_default(field: FieldInfo) -> Any:
    """The value a left-out field takes, as JSON; a section's: the keys set in it."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return None
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return _json(value)


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is dict:
        return f"mapping[{_type_name(args[0])}, {_type_name(args[1])}]"
    if annotation is typing.Any:
        return "any"
    return {"Path": "path"}.get(getattr(annotation, "__name__", ""), annotation.__name__)


# ---------------------------------------------------------------------------
# The JSON Schema


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of xstilts configs: a grid config where the
    mapping has a ``grid`` key, else an experiment config. Every key carries its
    description and default."""
    models: list[type[BaseModel]] = [ExperimentConfig, GridConfig]
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = top["$defs"]
    for model in _all_models(models):
        _complete_properties(model, defs[model.__name__])
    _partial_grid_sections(defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "xstilts config",
        "description": "An experiment config, or a grid config (one with a 'grid' key).",
        "if": {"type": "object", "required": ["grid"]},
        "then": {"$ref": "#/$defs/GridConfig"},
        "else": {"$ref": "#/$defs/ExperimentConfig"},
        "$defs": defs,
    }


def _all_models(roots: list[type[BaseModel]]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    todo = list(roots)
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            nested = _nested_model(field.annotation)
            if nested is not None:
                todo.append(nested[0])
    return found


def _complete_properties(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Defaults of default factories (pydantic leaves them out), no generated titles."""
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        prop = properties[field.alias or name]
        prop.pop("title", None)
        if not field.is_required():
            prop["default"] = field_default(field)


def _partial_grid_sections(defs: dict[str, Any]) -> None:
    """Point the grid's merged sections at partial copies of the experiment's models."""
    partial_experiment = _partial(defs, "ExperimentConfig")
    partial_intermediate = _partial(defs, "IntermediateConfig")
    grid = defs["GridConfig"]["properties"]
    spec = defs["GridSpec"]["properties"]
    grid["base"] = {
        "$ref": partial_experiment,
        "description": grid["base"]["description"],
        "default": {},
    }
    for key in ("option_settings", "target_settings"):
        spec[key]["additionalProperties"] = {"$ref": partial_experiment}
    spec["intermediate"]["additionalProperties"] = {
        "anyOf": [{"$ref": partial_intermediate}, {"type": "null"}]
    }
    defs[f"{PARTIAL}Scale"] = {
        "type": "object",
        "description": "A scale: the keys it replaces in each section of the grid.",
        "additionalProperties": False,
        "properties": {
            "grid": {"$ref": _partial(defs, "GridSpec")},
            "base": {"$ref": partial_experiment},
            "report": {"$ref": _partial(defs, "ReportSpec")},
            "selection": {"$ref": _partial(defs, "SelectionSettings")},
        },
    }
    grid["scales"]["additionalProperties"] = {"$ref": f"#/$defs/{PARTIAL}Scale"}


def _partial(defs: dict[str, Any], name: str) -> str:
    """A copy of definition ``name`` with no key required (its sections too); its ref."""
    partial_name = f"{PARTIAL}{name}"
    if partial_name not in defs:
        copied = copy.deepcopy(defs[name])
        copied.pop("required", None)
        defs[partial_name] = copied
        for ref_holder in _refs(copied):
            target = ref_holder["$ref"].rsplit("/", 1)[-1]
            if not target.startswith(PARTIAL):
                ref_holder["$ref"] = _partial(defs, target)
    return f"#/$defs/{partial_name}"


def _refs(node: Any) -> list[dict[str, Any]]:
    """Every mapping in ``node`` that holds a ``$ref``."""
    found = []
    if isinstance(node, dict):
        if "$ref" in node:
            found.append(node)
        for value in node.values():
            found.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs(value))
    return found
