"""mkdocs hook: adds the pages generated from the code to the site at build time.

The configuration reference and the task catalog are rendered by ``xstilts.docgen``
from the pydantic models and the YAML task catalog on every ``mkdocs build`` (and
``mkdocs serve``); they are never files under ``docs/``, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from xstilts.docgen import config_reference, task_catalog

GENERATED: dict[str, Callable[[], str]] = {
    config_reference.PAGE_PATH: config_reference.render_page,
    task_catalog.PAGE_PATH: task_catalog.render_page,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path, render in GENERATED.items():
        if files.get_file_from_path(path) is not None:
            raise PluginError(f"docs/{path} is generated at build time: delete the file from docs/")
        files.append(File.generated(config, path, content=render()))
    return files
