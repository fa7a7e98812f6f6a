"""``xstilts config show``: a config with every value filled in, and where each came from.

Sources, in the order they win: a ``--set`` override, the config file, then for the
keys neither sets: the task profile (``profile``), the task's own settings (``xstilts
tasks show TASK``), the default. A grid's chosen scale wins over the file and the
overrides (it replaces the keys it names). "Set by the user" is pydantic's notion
(``model_fields_set``), the one ``ExperimentConfig.to_yaml(only_set=True)`` keeps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from xstilts.config import ExperimentConfig
from xstilts.config_input import ConfigSource, Overrides, apply_overrides, read_config
from xstilts.config_schema import ConfigKind
from xstilts.errors import XstiltsError

OVERRIDE = "--set"
FILE = "file"
GIVEN = "config"
"""The source of values given as a mapping or an ExperimentConfig, not a file."""
DEFAULT = "default"
LEGEND = (
    "sources: --set (an override), file, profile NAME (the task profile), task NAME "
    "(that task's own settings: xstilts tasks show NAME), default"
)
_MISSING = object()
_STAGE = re.compile(r"target\.stages\[(\d+)\]\.(.+)")


@dataclass(frozen=True)
class ShownValue:
    """One value of the config, filled in."""

    key: str
    """Dotted path; list items by index: ``target.stages[0].task``."""
    value: Any
    source: str
    """``--set``, ``file`` (``config`` for a mapping), ``profile NAME``, ``task NAME``,
    ``scale NAME`` or ``default``."""


@dataclass(frozen=True)
class ShownConfig:
    """A config's values, each with its source."""

    kind: ConfigKind
    source: str
    """The config's file (``config`` for a mapping)."""
    values: tuple[ShownValue, ...]
    note: str | None = None
    """Why task settings are not filled in, when they are not."""

    def get(self, key: str) -> ShownValue:
        for shown in self.values:
            if shown.key == key:
                return shown
        raise KeyError(key)

    def to_text(self) -> str:
        """``key: value  # source`` lines, preceded by what the sources mean."""
        header = [f"# {self.source}: {self.kind} config, every value filled in", f"# {LEGEND}"]
        if self.note:
            header.append(f"# {self.note}")
        pairs = [(f"{v.key}: {yaml_value(v.value)}", v.source) for v in self.values]
        width = min(max((len(text) for text, _ in pairs), default=0), 72)
        return "\n".join([*header, *(f"{text:<{width}}  # {src}" for text, src in pairs)])

    def to_json(self) -> str:
        payload = {
            "kind": self.kind,
            "source": self.source,
            "note": self.note,
            "values": [{"key": v.key, "value": v.value, "source": v.source} for v in self.values],
        }
        return json.dumps(payload, indent=2, ensure_ascii=False)


def yaml_value(value: Any) -> str:
    """A value as YAML on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def show_config(config: ConfigSource, overrides: Overrides = None) -> ShownConfig:
    """Every value of ``config`` (with ``overrides``) filled in, with its source.

    An experiment config is resolved against its tasks (as ``xstilts run --dry-run``
    does) for the profile's and the tasks' settings; where that fails (a data folder
    not on this machine, an embedded model not installed), the values are the
    config's and its defaults, and ``note`` says why.

    Raises:
        XstiltsError: an unreadable or invalid config, a malformed override.
    """
    given = read_config(config)
    loaded = read_config(given, overrides)
    mine = GIVEN if given.source == GIVEN else FILE
    overridden: dict[str, Any] = {}
    apply_overrides(overridden, overrides)
    set_by = dict.fromkeys(flatten(overridden), OVERRIDE)
    if loaded.is_grid:
        grid = loaded.grid()
        user = flatten(grid.model_dump(mode="json", exclude_unset=True))
        scale = _scale_keys(loaded.payload)
        shown = []
        for key, value in flatten(grid.model_dump(mode="json")).items():
            replaced = _covering(key, scale)
            if replaced is not None:
                origin = scale[replaced]
            else:
                origin = _user_source(key, set_by, mine) if key in user else DEFAULT
            shown.append(ShownValue(key, value, origin))
        return ShownConfig("grid", loaded.source, tuple(shown))
    return _show_experiment(loaded.experiment(), loaded.source, set_by, mine)


def _show_experiment(
    experiment: ExperimentConfig, source: str, set_by: dict[str, str], mine: str
) -> ShownConfig:
    user = flatten(experiment.model_dump(mode="json", exclude_unset=True))
    plain = flatten(experiment.model_dump(mode="json"))
    note = None
    try:
        from xstilts.experiment.resolve import resolve

        resolved = flatten(resolve(experiment, planning=True).config.model_dump(mode="json"))
    except XstiltsError as err:
        resolved, note = plain, f"task settings not filled in: {err}"
    shown = []
    for key, value in resolved.items():
        given = user.get(key) is not None  # null: unset, resolving fills it
        if given or (key.startswith("data.") and key != "data.cache_dir"):
            # as the user gave it (data.source 'samples' stays 'samples')
            value = plain.get(key, value)
        if given:
            origin = _user_source(key, set_by, mine)
        elif plain.get(key, _MISSING) == value:
            origin = DEFAULT
        else:
            origin = _resolved_source(key, value, experiment, user)
        shown.append(ShownValue(key, value, origin))
    return ShownConfig("experiment", source, tuple(shown), note)


def _user_source(key: str, set_by: dict[str, str], mine: str) -> str:
    covering = _covering(key, set_by)
    return mine if covering is None else set_by[covering]


def _covering(key: str, prefixes: dict[str, str]) -> str | None:
    """The entry of ``prefixes`` that is ``key`` or a section holding it."""
    for prefix in prefixes:
        if key == prefix or key.startswith((f"{prefix}.", f"{prefix}[")):
            return prefix
    return None


def _scale_keys(payload: dict[str, Any]) -> dict[str, str]:
    """The keys the chosen scale replaced: ``grid.seeds`` -> ``scale cpu``."""
    name = payload.get("scale")
    if name is None:
        return {}
    chosen = (payload.get("scales") or {}).get(name) or {}
    replaced = {
        f"{section}.{key}": f"scale {name}"
        for section, keys in chosen.items()
        for key in (keys or {})
    }
    if payload.get("name"):
        replaced["name"] = f"scale {name}"  # the scale's name is appended
    return replaced


def _resolved_source(
    key: str,
    value: Any,
    experiment: ExperimentConfig,
    user: dict[str, Any],
) -> str:
    """Where resolving took a value the user left unset: the profile or a task."""
    from xstilts.tasks.profiles import profile_settings

    profile = experiment.profile
    target = experiment.target
    stage = _STAGE.fullmatch(key)
    if stage is not None:
        task, rest = target.stages[int(stage.group(1))].task, stage.group(2)
        if rest.startswith("training.adversarial"):
            return "target.training"
    elif key.startswith(("target.", "evaluation.")):
        task, rest = target.task, key.removeprefix("target.")
    elif key.startswith("intermediate.task_settings."):
        task, setting = key.split(".")[2], key.rsplit(".", 1)[-1]
        phase_key = f"intermediate.training.{setting}"
        return "intermediate.training" if phase_key in user else f"task {task}"
    elif key.startswith("intermediate.") and experiment.intermediate is not None:
        return f"task {experiment.intermediate.tasks[0]}"
    elif key.startswith("language_adapters.") and experiment.language_adapters is not None:
        return f"task {experiment.language_adapters.task}"
    else:
        return DEFAULT
    setting = rest.removeprefix("training.")
    if rest.startswith("training.") and profile_settings(profile, task).get(setting) == value:
        return f"profile {profile}"
    return f"task {task}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested payload; a list of sections by
    index (``target.stages[0].task``), other lists and empty sections as values."""
    if isinstance(value, dict) and (value or not prefix):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found = {}
        for index, item in enumerate(value):
            found.update(flatten(item, f"{prefix}[{index}]"))
        return found
    return {prefix: value}
