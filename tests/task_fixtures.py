"""Small tasks of every trainable format on the shipped real samples, for tests that
must exercise all formats: the stand-ins (classification comes from the smoke demo's
data, tagging and span QA from ``xstilts.samples``), plus a dual-encoder task on XQuAD
sentences, continued MLM on Tatoeba text and multiple choice on English COPA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from xstilts.samples import real_samples

COPA = [
    {"premise": "The man turned on the faucet.", "choice1": "The toilet filled with water.",
     "choice2": "Water flowed from the spout.", "question": "effect", "label": 1},
    {"premise": "The girl found a bug in her cereal.", "choice1": "She poured milk in the bowl.",
     "choice2": "She lost her appetite.", "question": "effect", "label": 1},
    {"premise": "The woman retired.", "choice1": "She received her pension.",
     "choice2": "She paid off her mortgage.", "question": "effect", "label": 0},
    {"premise": "I wanted to conserve energy.", "choice1": "I swept the floor.",
     "choice2": "I shut off the light.", "question": "effect", "label": 1},
]  # fmt: skip


def pairs_task() -> dict[str, Any]:
    """Dual-encoder retrieval of the answer sentence, LAReQA-style, on XQuAD sentences."""
    source = {"file_format": "squad_sentences"}
    return {
        "name": "xquad_pairs",
        "family": "retrieval",
        "format": "dual_encoder",
        "metric": "map@20",
        "languages": ["en"],
        "max_length": 64,
        "options": {"max_query_length": 32},
        "splits": {
            "train": {"local": {**source, "path": "xquad_sentences/train-en.json"}},
            "validation": {
                "local": {
                    **source,
                    "path": "xquad_sentences/validation-en.json",
                    "reader_options": {"mode": "retrieval"},
                }
            },
        },
    }


def mlm_task(folder: Path) -> dict[str, Any]:
    """Continued MLM on German and English Tatoeba sentences."""
    (folder / "mlm").mkdir()
    for lang, code in (("en", "deu-eng.eng"), ("de", "deu-eng.deu")):
        lines = (real_samples() / "tatoeba" / f"tatoeba.{code}").read_text("utf-8").splitlines()
        (folder / "mlm" / f"{lang}.train.txt").write_text("\n".join(lines[:200]) + "\n")
        (folder / "mlm" / f"{lang}.valid.txt").write_text("\n".join(lines[200:240]) + "\n")
    return {
        "name": "tatoeba_mlm",
        "family": "mlm",
        "format": "mlm",
        "metric": "mlm_accuracy",
        "languages": ["en", "de"],
        "train_languages": ["en", "de"],
        "max_length": 48,
        "splits": {
            "train": {"local": {"path": "mlm/{lang}.train.txt"}},
            "validation": {"local": {"path": "mlm/{lang}.valid.txt"}},
        },
    }


def write_format_tasks(folder: Path) -> Path:
    """Write COPA (for xcopa), the XCOPA samples, Tatoeba text and a task file with
    ``xquad_pairs`` and ``tatoeba_mlm`` into ``folder``; return the task file."""
    copa_dir = folder / "COPA"
    copa_dir.mkdir()
    for name in ("train.jsonl", "val.jsonl"):
        (copa_dir / name).write_text("".join(json.dumps(row) + "\n" for row in COPA * 4))
    shutil.copytree(real_samples() / "xcopa", folder / "xcopa")
    task_file = folder / "format-tasks.yaml"
    task_file.write_text(yaml.safe_dump({"tasks": [pairs_task(), mlm_task(folder)]}))
    return task_file


EVERY_FORMAT = ["demo_nli", "ud_pos", "xquad_sentences", "xquad_pairs", "tatoeba_mlm", "xcopa"]
"""Classification, tagging, span QA, dual encoder, MLM and multiple choice."""


def every_format_data(
    folder: Path, stand_ins: tuple[Path, Path], demo_data: tuple[Path, Path]
) -> list[Path]:
    """Lay out the data of ``EVERY_FORMAT`` under ``folder`` (to be ``data.data_dir``);
    return the task files to list in ``data.task_files``."""
    extra = write_format_tasks(folder)
    for name in ("ud_pos", "xquad_sentences"):
        (folder / name).symlink_to(stand_ins[0] / name)
    (folder / "demo").symlink_to(demo_data[0] / "demo")
    return [demo_data[1], stand_ins[1], extra]
