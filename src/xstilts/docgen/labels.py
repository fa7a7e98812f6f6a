"""How the configuration reference spells a field: its type, default and limits in words.

The keys themselves come from :func:`xstilts.config_schema.config_keys`; this module only
renders them for readers (``int or null`` where the schema's key list has ``int | null``).
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ModelLink = Callable[[type[BaseModel]], str]


def type_label(annotation: Any, link: ModelLink | None = None) -> str:
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
