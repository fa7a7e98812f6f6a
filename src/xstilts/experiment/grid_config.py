"""Grid configs: the models of a grid's YAML and reading them (with a chosen scale).

Light on purpose: validating a grid (and its JSON Schema) imports no torch.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field

from xstilts.config import StrictModel
from xstilts.errors import XstiltsError
from xstilts.experiment.report_spec import ReportSpec
from xstilts.selection.settings import SelectionSettings


class Resources(StrictModel):
    """What each job of the grid asks for."""

    cpus: int = Field(1, gt=0, description="CPUs per job (Ray).")
    gpus: int = Field(
        0, ge=0, description="GPUs per job; more than 1: one process per GPU, through torchrun."
    )


class SlurmSettings(StrictModel):
    """The Slurm executor's job settings (through submitit)."""

    partition: str | None = Field(None, description="Slurm partition; unset: the default one.")
    time_minutes: int = Field(24 * 60, gt=0, description="Time limit of each job, in minutes.")
    gpus_per_node: int = Field(
        1, ge=0, description="GPUs of each job (resources.gpus when that is more)."
    )
    cpus_per_task: int = Field(8, gt=0, description="CPUs of each job.")


class GridSpec(StrictModel):
    """The runs of a grid: every intermediate option x every target x every seed."""

    seeds: list[int] = Field(
        default_factory=lambda: [42],
        min_length=1,
        description="Seeds: each option and target runs once per seed.",
    )
    intermediate: dict[str, dict[str, Any] | None] = Field(
        description="Option label -> an 'intermediate' section (null for the baseline).",
        min_length=1,
    )
    targets: list[str] = Field(min_length=1, description="The target tasks.")
    option_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per option label: experiment keys to merge."
    )
    target_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per target task: experiment keys to merge."
    )
    resources: Resources = Field(default_factory=Resources, description="Each job's resources.")
    executor: Literal["local", "ray", "slurm"] = Field(
        "local", description="Where the jobs run (--executor overrides it)."
    )
    max_parallel: int = Field(
        1, gt=0, description="local: jobs at once, in worker processes (--max-parallel)."
    )
    ray_address: str | None = Field(
        None, description="ray: the cluster's address; unset: Ray's default."
    )
    slurm: SlurmSettings = Field(default_factory=SlurmSettings, description="slurm: job settings.")


class GridConfig(StrictModel):
    """A grid of experiments (xstilts run runs it; xstilts report reports it)."""

    name: str | None = Field(
        None, description="The grid's name (its runs' trackers group by it); unset: the file's."
    )
    grid: GridSpec = Field(description="Intermediate options x targets x seeds.")
    report: ReportSpec = Field(
        default_factory=ReportSpec, description="What the report answers first."
    )
    selection: SelectionSettings | None = Field(
        None,
        description="Transferability estimation (xstilts select); with top_k, budget mode: "
        "each target is trained only from its top-K options and the baseline.",
    )
    base: dict[str, Any] = Field(
        default_factory=dict, description="Experiment keys shared by every run of the grid."
    )
    scales: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named variants of the whole grid (e.g. cpu): each replaces the keys it "
        "names under 'grid', 'base' and 'report'; chosen with scale (--set scale=cpu).",
    )
    scale: str | None = Field(None, description="The scale to run; unset: the grid as written.")


def parse_grid(payload: dict[str, Any], source: str) -> GridConfig:
    from pydantic import ValidationError

    from xstilts.config import describe_validation_error

    payload = with_scale(payload, source)
    try:
        return GridConfig.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise XstiltsError(f"{source}: unknown grid key '{key}'") from None
        raise XstiltsError(f"{source}: {describe_validation_error(err)}") from None


def with_scale(payload: dict[str, Any], source: str) -> dict[str, Any]:
    """The grid as its chosen ``scale`` has it: each key that scale names under 'grid'
    and 'base' replaces the grid's own (a scale's 'intermediate' is all its options)."""
    scale = payload.get("scale")
    if scale is None:
        return payload
    scales = payload.get("scales") or {}
    if scale not in scales:
        known = ", ".join(sorted(scales)) or "none"
        raise XstiltsError(f"{source}: scale '{scale}' is not defined (its scales: {known})")
    chosen = scales[scale] or {}
    unknown = sorted(set(chosen) - {"grid", "base", "report", "selection"})
    if unknown:
        raise XstiltsError(
            f"{source}: scales.{scale} may set grid, base, report and selection, not {unknown}"
        )
    scaled = copy.deepcopy(payload)
    for section in ("grid", "base", "report", *(["selection"] if "selection" in chosen else [])):
        scaled.setdefault(section, {}).update(copy.deepcopy(chosen.get(section) or {}))
    if scaled.get("name"):
        scaled["name"] = f"{scaled['name']}-{scale}"
    return scaled
