"""Hyperparameter profiles: which fine-tuning settings a target task gets by default.

``xstilts`` (the default) is the X-STILTs paper's: jiant's values, as the task specs
of the catalog carry them (learning rate 1e-5, warmup 10% of the steps, the spec's
max length, epochs and batch size; REFERENCE section 4). ``xtreme`` is XTREME's own
fine-tuning scripts for XLM-R Large (google-research/xtreme ``scripts/train_<task>.sh``,
REFERENCE section 10); a task they do not name keeps its spec's values. Values the
config sets explicitly always win over a profile.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "xstilts": {},
    "xtreme": {
        # scripts/train_xnli.sh
        "xnli": {"max_length": 128, "epochs": 5, "learning_rate": 3e-5},
        # scripts/train_pawsx.sh
        "pawsx": {"max_length": 128, "learning_rate": 2e-5},
        # scripts/train_udpos.sh, scripts/train_panx.sh
        "udpos": {"max_length": 128, "learning_rate": 2e-5},
        "panx": {"max_length": 128, "learning_rate": 2e-5},
        # scripts/train_qa.sh (SQuAD v1.1 training for xquad and mlqa; TyDiQA-GoldP)
        **{
            task: {
                "batch_size": 32,
                "epochs": 3,
                "learning_rate": 3e-5,
                "warmup_steps": 500,
                "weight_decay": 1e-4,
            }
            for task in ("xquad", "mlqa", "tydiqa")
        },
        # scripts/train_xcopa.sh: SIQA, then COPA, with the same settings
        "siqa": {"epochs": 5, "max_length": 128, "learning_rate": 3e-5},
        "xcopa": {"epochs": 5, "max_length": 128, "learning_rate": 3e-5},
        # scripts/train_lareqa.sh
        "lareqa": {"learning_rate": 2e-5, "warmup_steps": 0},
        # scripts/train_mewslix.sh (batch 8 x 4 accumulation steps = 32)
        "mewslix": {"batch_size": 32, "warmup_steps": 0},
    },
}


def profile_settings(profile: str, task: str) -> dict[str, Any]:
    """The training settings ``profile`` gives ``task`` (empty: the spec's own)."""
    return dict(PROFILES[profile].get(task, {}))
