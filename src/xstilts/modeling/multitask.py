"""The model: one shared encoder and a head per task (or head-sharing group)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from xstilts.formats import TaskFormat
from xstilts.formats.base import Batch, Outputs
from xstilts.modeling.adapter_setup import AdapterRoutes, AdapterSetup


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
    """A vocabulary head behind the active invertible language adapter run in reverse
    (MAD-X); without one, the encoder passes the states through unchanged."""

    def __init__(self, encoder: PreTrainedModel, head: nn.Module) -> None:
        self.encoder, self.head = encoder, head

    def __call__(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # The library's invertible adapters expect [batch, length, hidden].
        batched = hidden_states.unsqueeze(0) if hidden_states.dim() == 2 else hidden_states
        inverted = self.encoder.invertible_adapters_forward(batched, rev=True)
        return self.head(inverted.reshape(hidden_states.shape))
