"""A run's evaluations, kept per (split, max_examples) and added to, never replaced.

Each evaluation of a trained model is a record, ``evaluations/<split>[-max<N>].json``,
holding the scores of every language evaluated so far with that split and example
limit, and the fingerprint of the data each was scored on. Evaluating again with
other languages adds them; a language already scored on the same data is reused;
an evaluation limited to N examples never touches a fuller one. ``results.json``
summarises the fullest record of the configured split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.io import atomic_write_json

EVALUATIONS_DIR = "evaluations"
PREDICTIONS_DIR = "predictions"


@dataclass(frozen=True)
class EvaluationKey:
    split: str
    max_examples: int | None

    @property
    def name(self) -> str:
        limit = "" if self.max_examples is None else f"-max{self.max_examples}"
        return f"{self.split}{limit}"

    def record_path(self, run_dir: Path) -> Path:
        return run_dir / EVALUATIONS_DIR / f"{self.name}.json"

    def predictions_dir(self, run_dir: Path) -> Path:
        """The XTREME submission layout for whole splits; beside the record otherwise."""
        if self.max_examples is None:
            return run_dir / PREDICTIONS_DIR
        return run_dir / EVALUATIONS_DIR / self.name

    def fullness(self) -> float:
        return float("inf") if self.max_examples is None else self.max_examples


def load_record(run_dir: Path, key: EvaluationKey) -> dict[str, Any]:
    path = key.record_path(run_dir)
    if not path.is_file():
        return {"split": key.split, "max_examples": key.max_examples, "languages": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("languages"), dict):
            raise ValueError("no 'languages' mapping")
    except (ValueError, UnicodeDecodeError) as err:
        raise XstiltsError(
            f"{path}: not a valid evaluation record ({err}); delete it to evaluate again"
        ) from None
    return record


def save_record(run_dir: Path, key: EvaluationKey, record: dict[str, Any]) -> None:
    atomic_write_json(key.record_path(run_dir), record)


def fullest_key(run_dir: Path, split: str) -> EvaluationKey | None:
    """The record of ``split`` scored on the most examples per language, if any."""
    keys = []
    for path in (run_dir / EVALUATIONS_DIR).glob(f"{split}*.json"):
        limit = path.stem.removeprefix(split)
        if limit == "":
            keys.append(EvaluationKey(split, None))
        elif limit.startswith("-max") and limit[4:].isdigit():
            keys.append(EvaluationKey(split, int(limit[4:])))
    return max(keys, key=EvaluationKey.fullness, default=None)


RESULTS_FILE = "results.json"


def is_complete(
    run_dir: Path, key: EvaluationKey, languages: list[str], benchmark: str | None = None
) -> bool:
    """Whether a run has readable results, summarised under ``benchmark`` (its
    evaluation.benchmark), and the record of ``key`` scores every one of ``languages``
    (how grids tell finished runs; running an unfinished one again trains nothing that
    is trained, evaluates only what is missing and rewrites results.json)."""
    try:
        results = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
        record = load_record(run_dir, key)
    except (OSError, ValueError, XstiltsError):
        return False
    if not isinstance(results, dict) or results.get("benchmark") != benchmark:
        return False
    return all(lang in record["languages"] for lang in languages)


def clear(run_dir: Path) -> None:
    """Forget every evaluation (the model they scored is being trained again)."""
    folder = run_dir / EVALUATIONS_DIR
    for path in folder.glob("*.json") if folder.is_dir() else []:
        path.unlink()
