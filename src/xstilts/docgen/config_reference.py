"""The configuration reference page, generated from the config's pydantic models.

Experiment configs are :class:`xstilts.config.ExperimentConfig`; grid configs are
:class:`xstilts.experiment.grid_config.GridConfig`, whose ``base`` and option sections hold
experiment keys.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from xstilts.config import ADVERSARIAL_OPTIONS, AdversarialConfig
from xstilts.config_schema import LIST_ITEM, MAPPING_KEY, ConfigKey, ConfigKind, config_keys
from xstilts.docgen.labels import constraints, default_label, model_doc, type_label
from xstilts.docgen.markdown import code, table

PAGE_PATH = "reference/configuration.md"
"""Where the page sits in the site (relative to ``docs/``)."""

INTRO = f"""\
# Configuration reference

This page is generated from the configuration's pydantic models each time the site is
built (`src/xstilts/docgen/config_reference.py`), so it lists exactly the keys xstilts
accepts. The [Configuration](../configuration.md) page explains profiles, target
stages and overrides with an annotated example.

A key path joins keys with dots, as `--set` takes them (`--set
target.training.epochs=3`). `{MAPPING_KEY}` stands for a key you choose (a task name
under `task_settings`, an option label under a grid's `intermediate`), `{LIST_ITEM}` for
each item of a list (`target.stages{LIST_ITEM}.task`). A key left out takes its default;
`section` means the default is the section with its own defaults, `null` that the key is
unset (a task's or a profile's value then applies where the description says so).
"""


def anchor(model: type[BaseModel]) -> str:
    """The heading id of a model's section (the heading is the class name)."""
    return model.__name__.lower()


def _link(model: type[BaseModel]) -> str:
    return f"[{model.__name__}](#{anchor(model)})"


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    parts = [field.description or ""]
    limits = constraints(field)
    if limits:
        parts.append(f"({', '.join(limits)})")
    if model.model_config.get("validate_by_name") and (field.alias or name) != name:
        parts.append(f"Also accepted as {code(name)}.")
    return " ".join(part for part in parts if part)


def index_table(keys: list[ConfigKey]) -> str:
    """Every key path: type, default and the section that explains it."""
    rows = [
        (
            code(key.path),
            type_label(key.field.annotation, _link),
            code(default_label(key.field)),
            _link(key.owner),
        )
        for key in keys
    ]
    return table(("key path", "type", "default", "section"), rows)


def models_in(keys: list[ConfigKey]) -> dict[type[BaseModel], list[str]]:
    """Each model that declares keys, in order of first appearance, with the paths
    where it sits (``""`` for the top level)."""
    found: dict[type[BaseModel], list[str]] = {}
    for key in keys:
        places = found.setdefault(key.owner, [])
        parent = key.path.rpartition(".")[0]
        if parent not in places:
            places.append(parent)
    return found


def adversarial_defaults() -> str:
    """What an unset option of each adversarial method resolves to."""
    rows = [
        (
            code(method),
            ", ".join(f"{name} {code(value)}" for name, value in options.items()) or "none",
        )
        for method, options in ADVERSARIAL_OPTIONS.items()
    ]
    return "Each method's options and their defaults:\n\n" + table(("method", "options"), rows)


EXTRAS = {AdversarialConfig: adversarial_defaults}
"""Models whose section ends with more than their keys."""


def section(model: type[BaseModel], locations: list[str]) -> str:
    """One model: where it sits, its docstring and its keys."""
    where = ", ".join(code(path) if path else "the top level" for path in locations)
    lines = [f"### {model.__name__}", "", f"At {where}.", ""]
    doc = model_doc(model)
    if doc:
        lines += [doc, ""]
    rows = [
        (
            code(field.alias or name),
            type_label(field.annotation, _link),
            code(default_label(field)),
            _description(model, name, field),
        )
        for name, field in model.model_fields.items()
    ]
    lines.append(table(("key", "type", "default", "description"), rows))
    if model in EXTRAS:
        lines.append(EXTRAS[model]())
    return "\n".join(lines)


def config_part(title: str, intro: str, kind: ConfigKind) -> str:
    """A part of the page: its intro, the index of every key path, then each model."""
    keys = config_keys(kind)
    sections = [section(model, where) for model, where in models_in(keys).items()]
    return "\n".join(
        [
            f"## {title}",
            "",
            intro,
            "",
            f"{len(keys)} key paths:",
            "",
            index_table(keys),
            *sections,
        ]
    )


EXPERIMENT_INTRO = """\
What `xstilts run CONFIG.yaml` reads for one experiment (`xstilts.config.ExperimentConfig`).
`grid_option` and `grid_name` are set by grids for their runs."""

GRID_INTRO = """\
A config with a `grid` section (`xstilts.experiment.grid_config.GridConfig`): `base`, the
values of `grid.intermediate`, `grid.option_settings` and `grid.target_settings` hold
experiment keys (the part above), merged in that order into each run's config. A scale
(`scales.<name>`, chosen with `--set scale=<name>`) replaces the keys it names under
`grid`, `base`, `report` and `selection`."""


def render_page() -> str:
    """The whole page, as Markdown."""
    return "\n".join(
        [
            INTRO,
            config_part("Experiment configs", EXPERIMENT_INTRO, "experiment"),
            config_part("Grid configs", GRID_INTRO, "grid"),
        ]
    )
