"""The task catalog page, generated from the YAML catalog (``src/xstilts/tasks/catalog``)
and the stand-in tasks of the shipped samples (``xstilts.samples``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from xstilts.docgen.markdown import code, table
from xstilts.samples import stand_in_tasks
from xstilts.tasks import TaskRegistry, TaskSpec, load_registry
from xstilts.tasks.profiles import PROFILES, profile_settings
from xstilts.tasks.registry import TASK_PATH_ENV

PAGE_PATH = "reference/tasks.md"
"""Where the page sits in the site (relative to ``docs/``)."""

BENCHMARK_NAMES = {"xtreme": "XTREME", "xtreme-r": "XTREME-R"}
SHOWN_LABELS = 20

INTRO = """\
# Task catalog

This page is generated from the task specs each time the site is built
(`src/xstilts/docgen/task_catalog.py` reads `src/xstilts/tasks/catalog/*.yaml` through
the registry), so it shows exactly what `xstilts tasks` and `xstilts tasks show NAME`
print. How a spec is written, and how to add your own: [Tasks are data](../tasks.md).

In the sources, `{lang}` is filled in with each language and `{code}` with the task's
name for it in files and hub configs. `data.source: hub` reads the hub sources, `local`
the files under `data.data_dir` (a split without sources of that kind falls back to the
other kind). `profile: xtreme` replaces the task's defaults with the settings of
XTREME's fine-tuning scripts where it lists some.
"""


@contextmanager
def _without_user_task_files() -> Iterator[None]:
    saved = os.environ.pop(TASK_PATH_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[TASK_PATH_ENV] = saved


def catalog_registry() -> TaskRegistry:
    """The built-in tasks alone, whatever ``$XSTILTS_TASK_FILES`` holds."""
    with _without_user_task_files():
        return load_registry()


def stand_in_specs() -> list[TaskSpec]:
    """The CPU stand-in tasks that ``data.source: samples`` adds."""
    return [TaskSpec.model_validate(entry) for entry in stand_in_tasks()["tasks"]]


def overview(specs: Iterable[TaskSpec]) -> str:
    rows = [
        (
            f"[{spec.name}](#{spec.name})",
            spec.family,
            spec.format,
            spec.metric,
            len(spec.languages),
            ", ".join(BENCHMARK_NAMES.get(b, b) for b in spec.benchmarks) or "-",
        )
        for spec in specs
    ]
    return table(("task", "family", "format", "metric", "languages", "benchmarks"), rows)


def benchmark_languages(specs: list[TaskSpec]) -> str:
    """Per benchmark: each of its tasks with the languages it is evaluated on."""
    parts = []
    for benchmark, title in BENCHMARK_NAMES.items():
        members = [s for s in specs if benchmark in s.benchmark_languages]
        everything = sorted({lang for s in members for lang in s.benchmark_languages[benchmark]})
        rows = [
            (
                f"[{s.name}](#{s.name})",
                len(s.benchmark_languages[benchmark]),
                " ".join(s.benchmark_languages[benchmark]),
            )
            for s in members
        ]
        parts += [
            f"### {title}",
            "",
            f"{len(members)} tasks, {len(everything)} languages in all: {' '.join(everything)}.",
            "",
            table(("task", "languages", "codes"), rows),
        ]
    return "\n".join(parts)


def _labels(spec: TaskSpec) -> str:
    if spec.label_file is not None and not spec.labels:
        return f"read from {code(spec.label_file)}"
    if not spec.labels:
        return "none (the format has no label set)"
    shown = " ".join(spec.labels[:SHOWN_LABELS])
    more = " ..." if len(spec.labels) > SHOWN_LABELS else ""
    return f"{len(spec.labels)}: {shown}{more}"


def facts(spec: TaskSpec) -> list[tuple[str, str]]:
    """The settings ``xstilts tasks show`` prints, as (name, value) pairs."""
    found = [
        ("family", spec.family),
        ("format", code(spec.format)),
        ("metric", code(spec.metric)),
        ("labels", _labels(spec)),
        ("head", code(spec.head_name)),
        ("languages", f"{len(spec.languages)}: {' '.join(spec.languages)}"),
    ]
    if spec.train_languages != ["en"]:
        found.append(("train languages", " ".join(spec.train_languages)))
    for benchmark, langs in spec.benchmark_languages.items():
        name = BENCHMARK_NAMES.get(benchmark, benchmark)
        found.append((f"{name} languages", f"{len(langs)}: {' '.join(langs)}"))
    defaults = f"max_length {spec.max_length}, epochs {spec.epochs:g}, batch_size {spec.batch_size}"
    found.append(("defaults", defaults))
    for profile in PROFILES:
        settings = profile_settings(profile, spec.name)
        if settings:
            values = ", ".join(f"{key} {value:g}" for key, value in settings.items())
            found.append((f"profile {profile}", values))
    if spec.options:
        found.append(("options", ", ".join(f"{k}={v}" for k, v in spec.options.items())))
    return found


def sources(spec: TaskSpec) -> str:
    rows = [
        (split, mode, code(source.describe()), columns, only)
        for split, mode, source, columns, only in spec.source_rows()
    ]
    return table(("split", "mode", "source", "columns", "languages"), rows)


def task_section(spec: TaskSpec, title: str | None = None) -> str:
    lines = [f"### {title or spec.name}", ""]
    if spec.description:
        lines += [" ".join(spec.description.split()), ""]
    lines.append(table(("setting", "value"), facts(spec)))
    lines.append(sources(spec))
    return "\n".join(lines)


STAND_INS_INTRO = """\
`data.source: samples` adds these tasks, cut from the real samples shipped in
`src/xstilts/resources/real`, for CPU-sized runs (the demo and the studies' CPU
scales). Their files are written under the cache folder on first use."""


def render_page() -> str:
    """The whole page, as Markdown."""
    specs = list(catalog_registry())
    stand_ins = stand_in_specs()
    return "\n".join(
        [
            INTRO,
            f"## All {len(specs)} tasks",
            "",
            overview(specs),
            "## Languages per benchmark",
            "",
            benchmark_languages(specs),
            "## Tasks",
            "",
            *(task_section(spec) for spec in specs),
            "## CPU stand-ins",
            "",
            STAND_INS_INTRO,
            "",
            *(task_section(spec, f"{spec.name} (stand-in)") for spec in stand_ins),
        ]
    )
