"""Building test configs: nested keys set from flat names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def set_keys(payload: dict[str, Any], changes: dict[str, Any], separator: str) -> dict[str, Any]:
    """Set ``a<sep>b<sep>c`` keys in a nested payload (sections made as needed)."""
    for key, value in changes.items():
        node = payload
        *parents, last = key.split(separator)
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return payload


def write_config(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(payload))
    return path
