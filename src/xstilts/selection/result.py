"""What ``xstilts select`` (and ``xstilts.select``) hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xstilts.selection.select import TargetRanking


@dataclass(frozen=True)
class SelectionResult:
    """What ``xstilts select`` computed."""

    rankings: dict[str, list[TargetRanking]]
    """Per method asked for: each target's ranking of its options, best first."""
    evaluation: dict[str, Any] | None = None
    """With ``evaluate``: per method (and ``size``, ``random``), how its rankings agree
    with the measured scores, as ``evaluation_file`` keeps it."""
    evaluation_file: Path | None = None

    def ranking(self, method: str, target: str) -> TargetRanking:
        """``method``'s ranking of ``target``'s options."""
        for ranking in self.rankings.get(method, []):
            if ranking.target == target:
                return ranking
        raise KeyError(f"no {method} ranking of target {target!r}")
