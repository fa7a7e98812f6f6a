"""A config as the user gives it (a YAML file, a mapping, an ExperimentConfig) with its
overrides applied: the one payload that the CLI and the Python API both parse."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.config import (
    ExperimentConfig,
    apply_override,
    parse_config,
    read_config_payload,
    set_key,
)
from xstilts.errors import XstiltsError
from xstilts.experiment.grid_config import GridConfig, parse_grid


@dataclass(frozen=True)
class ConfigPayload:
    """A config read, its overrides applied, not yet validated."""

    payload: dict[str, Any]
    source: str
    """What names the config in errors: its file, else ``config``."""

    @property
    def is_grid(self) -> bool:
        """Whether it is a grid config (it has a ``grid`` section)."""
        return "grid" in self.payload

    def experiment(self) -> ExperimentConfig:
        """Validated as an experiment config."""
        return parse_config(self.payload, source=self.source)

    def grid(self) -> GridConfig:
        """Validated as a grid config (its chosen ``scale`` applied)."""
        return parse_grid(self.payload, self.source)


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | ExperimentConfig | ConfigPayload
"""A YAML file, a mapping of its keys, an `ExperimentConfig`, or
a `ConfigPayload` already read."""
Overrides = Sequence[str] | Mapping[str, Any] | None
"""``key=value`` strings as ``--set`` takes them (values parsed as YAML), or a mapping of
dotted keys to values: ``{"target.training.epochs": 2}``."""


def read_config(config: ConfigSource, overrides: Overrides = None) -> ConfigPayload:
    """The payload of ``config`` with ``overrides`` applied (later ones win).

    An `ExperimentConfig` gives the keys set in it, so task
    profiles still fill the others, as they do for a file.

    Raises:
        XstiltsError: a missing or unreadable file, a value that is no config, a
            malformed override.
    """
    if isinstance(config, ConfigPayload):
        loaded = ConfigPayload(copy.deepcopy(config.payload), config.source)
    elif isinstance(config, ExperimentConfig):
        loaded = ConfigPayload(config.model_dump(mode="json", exclude_unset=True), "config")
    elif isinstance(config, Mapping):
        loaded = ConfigPayload(copy.deepcopy(dict(config)), "config")
    elif isinstance(config, str | os.PathLike):
        path = Path(config)
        loaded = ConfigPayload(read_config_payload(path), str(path))
    else:
        raise XstiltsError(
            f"config: expected a YAML file, a mapping or an ExperimentConfig, not "
            f"{type(config).__name__}"
        )
    apply_overrides(loaded.payload, overrides)
    return loaded


def apply_overrides(payload: dict[str, Any], overrides: Overrides) -> None:
    """Apply ``overrides`` to ``payload`` in place, in order."""
    if overrides is None:
        return
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_key(payload, str(key), copy.deepcopy(value), f"overrides[{key!r}]")
        return
    if isinstance(overrides, str):  # one override, not a sequence of characters
        overrides = [overrides]
    for item in overrides:
        apply_override(payload, item)
