"""The documentation site: `mkdocs build --strict` passes, and the pages generated from
the code list every config key path and every task of the registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xstilts.config_schema import config_key_paths
from xstilts.docgen import config_reference, task_catalog
from xstilts.tasks import load_registry
from xstilts.tasks.registry import TASK_PATH_ENV

ROOT = Path(__file__).resolve().parents[1]


class _Page(HTMLParser):
    """The ids and the text of every <code> element of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.code: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
        if tag == "code":
            self._depth += 1
            self.code.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.code[-1] += data


def _read(site: Path, page: str) -> _Page:
    parsed = _Page()
    parsed.feed((site / page / "index.html").read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k != TASK_PATH_ENV}
    env |= {"NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return out


def test_the_strict_build_writes_every_page_of_the_navigation(site: Path) -> None:
    nav_pages = re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav_pages) > 20
    for page in nav_pages:
        folder = "" if page == "index.md" else page.removesuffix(".md")
        assert (site / folder / "index.html").is_file(), page
    assert not (site / "hooks.py").exists()


def test_the_config_reference_lists_every_key_path(site: Path) -> None:
    page = _read(site, config_reference.PAGE_PATH.removesuffix(".md"))
    listed = set(page.code)
    expected = config_key_paths("experiment") + config_key_paths("grid")
    assert len(expected) > 200
    missing = [path for path in expected if path not in listed]
    assert missing == []
    for path in ("target.training.learning_rate", "intermediate.task_settings.*.batch_size"):
        assert path in listed


def test_the_task_catalog_lists_every_task_of_the_registry(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)
    page = _read(site, task_catalog.PAGE_PATH.removesuffix(".md"))
    text = (site / "reference" / "tasks" / "index.html").read_text(encoding="utf-8")
    registry = load_registry()
    assert len(registry) > 20
    for spec in registry:
        assert spec.name in page.ids, spec.name
        assert f"{len(spec.languages)}: {' '.join(spec.languages)}" in text, spec.name
        for benchmark, languages in spec.benchmark_languages.items():
            assert f"{len(languages)}: {' '.join(languages)}" in text, (spec.name, benchmark)
    for stand_in in task_catalog.stand_in_specs():
        assert f"{stand_in.name}-stand-in" in page.ids


def test_generated_pages_are_not_files_under_docs() -> None:
    for page in (config_reference.PAGE_PATH, task_catalog.PAGE_PATH):
        assert not (ROOT / "docs" / page).exists(), page


def test_the_readme_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 10
    for link in links:
        assert (ROOT / link).is_file(), link
