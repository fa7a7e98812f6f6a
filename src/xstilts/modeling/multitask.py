"""The model: one shared encoder and a head per task (or head-sharing group)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from xstilts.errors import XstiltsError
from xstilts.formats import TaskFormat
from xstilts.formats.base import Batch, Outputs
from xstilts.modeling.adapter_setup import AdapterRoutes, AdapterSetup

_FLOAT32: ContextVar[bool] = ContextVar("xstilts_float32_forward", default=False)


@contextmanager
def float32_forward() -> Iterator[None]:
    """Forward passes of every ``MultiTaskModel`` called inside run in float32, even
    under a run's mixed precision (whose autocast Accelerate puts around ``forward``)."""
    token = _FLOAT32.set(True)
    try:
        yield
    finally:
        _FLOAT32.reset(token)


class MultiTaskModel(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        heads: dict[str, nn.Module],
        formats: dict[str, TaskFormat],
        *,
        base: dict[str, Any] | None = None,
        adapters: AdapterSetup | None = None,
        routes: AdapterRoutes | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.formats = formats
        self.base = base
        """What the phase started from (model, revision, sha256 of its weights)."""
        self.adapters = adapters if routes is not None else None
        """The phase's adapters; None for a model without (or with merged) adapters."""
        self.routes = routes
        """Which adapters run for each head."""

    def forward(self, head: str, batch: Batch) -> Outputs:
        if _FLOAT32.get():
            # Inside Accelerate's autocast wrapper of this very method: switch it off.
            with torch.autocast(self.encoder.device.type, enabled=False):
                return self._forward(head, batch)
        return self._forward(head, batch)

    def _forward(self, head: str, batch: Batch) -> Outputs:
        fmt, module = self.formats[head], self.heads[head]
        if self.routes is None:
            return fmt.forward(self.encoder, module, batch)
        self.routes.activate(self.encoder, head)
        if fmt.predicts_tokens:
            return fmt.forward(self.encoder, _InvertedHead(self.encoder, module), batch)
        return fmt.forward(self.encoder, module, batch)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters trained in this phase, and all of them (tied ones counted once)."""
        parameters = list(self.parameters())
        return {
            "trained": sum(p.numel() for p in parameters if p.requires_grad),
            "total": sum(p.numel() for p in parameters),
        }


class _InvertedHead:
    """A vocabulary head with the active invertible language adapter run in reverse
    right before its output embeddings (MAD-X, Pfeiffer et al. 2020, as the adapters
    library's own LM heads do): after the head's transform (dense, activation,
    LayerNorm), on the input of the tied vocabulary projection. Without an invertible
    adapter the encoder passes the states through unchanged."""

    def __init__(self, encoder: PreTrainedModel, head: nn.Module) -> None:
        self.encoder, self.head = encoder, head

    def __call__(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = getattr(self.head, "get_output_embeddings", lambda: None)()
        if output is None:
            raise XstiltsError(
                f"{type(self.head).__name__}: no output embeddings to run the invertible "
                "language adapter in reverse before"
            )
        handle = output.register_forward_pre_hook(self._invert)
        try:
            return self.head(hidden_states)
        finally:
            handle.remove()

    def _invert(self, module: nn.Module, args: tuple) -> tuple:
        states = args[0]
        # The library's invertible adapters expect [batch, length, hidden].
        batched = states.unsqueeze(0) if states.dim() == 2 else states
        inverted = self.encoder.invertible_adapters_forward(batched, rev=True)
        return (inverted.reshape(states.shape), *args[1:])
