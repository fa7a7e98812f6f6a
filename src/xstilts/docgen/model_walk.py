"""Walk nested pydantic models: every key path a config accepts, and readable types.

A key path joins the keys from the top of a config to one value with dots:
``target.training.learning_rate``. Two kinds of nesting need a marker: ``*`` for the
keys of a mapping you choose yourself (``intermediate.task_settings.*.batch_size``: a
task name there) and ``[]`` for every item of a list (``target.stages[].task``), as
``xstilts.config_schema.config_key_paths`` writes them.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

MAPPING_KEY = "*"
LIST_ITEM = "[]"


@dataclass(frozen=True)
class Key:
    """One key of a model, at one place in the config."""

    path: str
    """The full key path, e.g. ``target.training.learning_rate``."""
    name: str
    """The key as written in YAML (a field's alias where it has one)."""
    field: FieldInfo
    owner: type[BaseModel]
    """The model that declares the key."""


def key_name(name: str, field: FieldInfo) -> str:
    """The key a YAML file uses: the field's alias (``lambda``) where it has one."""
    return field.alias or name


def nested_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field's value holds, and how its keys join the field's path:
    ``.`` (the model itself, or optional), ``[].`` (a list of them) or ``.*.``
    (a mapping of them); None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "."
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args:
        found = nested_model(args[0])
        return (found[0], f"{LIST_ITEM}.") if found else None
    if origin is dict and len(args) == 2:
        found = nested_model(args[1])
        return (found[0], f".{MAPPING_KEY}.") if found else None
    if origin in (Union, types.UnionType):
        for arg in args:
            found = nested_model(arg)
            if found is not None:
                return found
    return None


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    """Every key of ``model`` and of the models nested in it, depth first, in the order
    the models declare them."""
    for name, field in model.model_fields.items():
        key = key_name(name, field)
        path = f"{prefix}{key}"
        yield Key(path=path, name=key, field=field, owner=model)
        nested = nested_model(field.annotation)
        if nested is not None:
            child, joiner = nested
            yield from walk(child, f"{path}{joiner}")


def key_paths(model: type[BaseModel]) -> list[str]:
    """Every key path ``model`` accepts, depth first."""
    return [key.path for key in walk(model)]


def models_in(model: type[BaseModel]) -> dict[type[BaseModel], list[str]]:
    """``model`` and every model nested in it, in order of first appearance, each with
    the paths where it sits (``""`` for the top level)."""
    found: dict[type[BaseModel], list[str]] = {model: [""]}
    for key in walk(model):
        nested = nested_model(key.field.annotation)
        if nested is not None:
            child, joiner = nested
            location = f"{key.path}{joiner}".removesuffix(".")
            found.setdefault(child, []).append(location)
    return found


def type_label(annotation: Any, link: Any = None) -> str:
    """A readable type: ``int``, ``"no" or "bf16"``, ``list of str``, ``int or null``.
    ``link(model)`` renders a nested model's name (a Markdown link, say)."""
    name_of = link or (lambda model: model.__name__)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return name_of(annotation)
    if annotation is Path:
        return "path"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(json.dumps(value) for value in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_label(arg, link) for arg in args)
    if origin is list:
        return f"list of {type_label(args[0], link)}" if args else "list"
    if origin is dict:
        if len(args) == 2:
            return f"mapping of {type_label(args[0], link)} to {type_label(args[1], link)}"
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def default_label(field: FieldInfo) -> str:
    """The default as YAML would spell it, ``required``, or ``section`` for a nested
    model whose own keys hold the defaults."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "section"
    return json.dumps(value, default=str)


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def constraints(field: FieldInfo) -> list[str]:
    """The field's bounds and length limits in words: ``> 0``, ``at least 1 item``."""
    found = []
    for item in field.metadata:
        for attribute, sign in _BOUNDS.items():
            bound = getattr(item, attribute, None)
            if bound is not None:
                found.append(f"{sign} {bound:g}" if isinstance(bound, float) else f"{sign} {bound}")
        if getattr(item, "min_length", None):
            count = item.min_length
            found.append(f"at least {count} item{'s' if count != 1 else ''}")
        if getattr(item, "max_length", None) is not None:
            found.append(f"at most {item.max_length} items")
        if getattr(item, "pattern", None):
            found.append(f"matches {item.pattern}")
    return found


def model_doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not an inherited one), cleaned; empty if none."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""
