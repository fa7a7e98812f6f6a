"""Simulated kills of a training run, for resume tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xstilts.train import loop


def kill_after_checkpoint(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[], object], step: int, where: str = ""
) -> None:
    """Run ``run``, killing it (KeyboardInterrupt) right after the loop has saved the
    checkpoint of ``step`` in a phase folder whose path contains ``where``."""
    real_save = loop.save_checkpoint

    def save_then_kill(target, *rest):
        real_save(target, *rest)
        state = rest[3]  # after the model, the optimizer and the scheduler
        if state["step"] == step and where in str(target):
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(loop, "save_checkpoint", save_then_kill)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
