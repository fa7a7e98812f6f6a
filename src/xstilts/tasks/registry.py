"""The task registry: the built-in catalog plus any user task files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from xstilts.errors import XstiltsError
from xstilts.io import read_utf8
from xstilts.tasks.spec import TaskSpec

TASK_PATH_ENV = "XSTILTS_TASK_FILES"
"""os.pathsep-separated task files or folders added to every registry."""


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec, *, replace: bool = False) -> None:
        existing = self._tasks.get(spec.name)
        if existing is not None and not replace:
            raise XstiltsError(
                f"{spec.origin}: task '{spec.name}' is already defined in {existing.origin}"
            )
        self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks))
            raise XstiltsError(f"unknown task '{name}'; known tasks: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def add_file(self, path: Path) -> None:
        """Add every spec of a YAML file; user files may redefine a built-in task."""
        for spec in read_task_file(path):
            self.add(spec, replace=self._tasks.get(spec.name, spec).origin == "built-in")


def read_task_file(path: Path) -> list[TaskSpec]:
    """Specs from a YAML file holding one task, a list of tasks, or ``tasks: [...]``."""
    if not path.is_file():
        raise XstiltsError(f"task file not found: {path}")
    try:
        payload = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise XstiltsError(f"{path}{line}: not valid YAML") from None
    if isinstance(payload, dict) and "tasks" in payload:
        payload = payload["tasks"]
    entries = payload if isinstance(payload, list) else [payload]
    specs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise XstiltsError(f"{path}: each task must be a mapping of keys to values")
        specs.append(_parse_spec(entry, path))
    return specs


def _parse_spec(entry: dict, path: Path) -> TaskSpec:
    origin = str(path)
    try:
        return TaskSpec.model_validate({**entry, "origin": origin, "base_dir": path.parent})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        name = entry.get("name", "?")
        raise XstiltsError(f"{path}: task '{name}', key '{key}': {first['msg']}") from None


def _builtin_specs() -> Iterator[TaskSpec]:
    catalog = resources.files("xstilts.tasks") / "catalog"
    for entry in sorted(catalog.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            with resources.as_file(entry) as path:
                for spec in read_task_file(path):
                    yield spec.model_copy(update={"origin": "built-in", "base_dir": None})


def _expand(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.glob("*.yaml"))
        else:
            yield path


def load_registry(task_files: Iterable[Path] = ()) -> TaskRegistry:
    """Built-in tasks, then files from $XSTILTS_TASK_FILES, then ``task_files``."""
    registry = TaskRegistry()
    for spec in _builtin_specs():
        registry.add(spec)
    from_env = [Path(p) for p in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep) if p]
    for path in _expand([*from_env, *task_files]):
        registry.add_file(path)
    return registry
