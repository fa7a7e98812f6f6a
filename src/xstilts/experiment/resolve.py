"""From a config to a fully resolved experiment: tasks checked, defaults filled, ids computed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.config import (
    ExperimentConfig,
    TaskSettings,
    TrainingConfig,
    config_hash,
    semantic_dump,
)
from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.metrics import get_metric
from xstilts.model_store import model_location
from xstilts.model_store.catalog import cache_root
from xstilts.tasks import TaskRegistry, TaskSpec, load_registry
from xstilts.tasks.loading import with_label_file


@dataclass
class ResolvedExperiment:
    config: ExperimentConfig
    registry: TaskRegistry
    intermediate: list[TaskSpec]
    target: TaskSpec
    languages: list[str]
    intermediate_name: str | None
    run_name: str

    @property
    def cache_dir(self) -> Path:
        assert self.config.data.cache_dir is not None
        return self.config.data.cache_dir


def resolve(config: ExperimentConfig, registry: TaskRegistry | None = None) -> ResolvedExperiment:
    """``registry``: the tasks, if already loaded from ``config.data.task_files``."""
    data_dir = config.data.data_dir
    if data_dir is not None and not data_dir.is_dir():
        what = "is a file" if data_dir.exists() else "does not exist"
        raise XstiltsError(f"data.data_dir: {data_dir} {what}; expected the folder of the data")
    registry = registry or load_registry(config.data.task_files)
    intermediate = []
    if config.intermediate is not None:
        for index, name in enumerate(config.intermediate.tasks):
            spec = _task(registry, name, f"intermediate.tasks[{index}]")
            intermediate.append(with_label_file(spec, data_dir))
    target = with_label_file(_task(registry, config.target.task, "target.task"), data_dir)
    languages = _languages(config, target)

    resolved = config.model_copy(deep=True)
    if resolved.intermediate is not None:
        inter = resolved.intermediate
        inter.training = inter.training.model_copy(
            update={"epochs": inter.training.epochs or intermediate[0].epochs}
        )
        inter.task_settings = {
            spec.name: _task_settings(inter.training, spec, inter.task_settings.get(spec.name))
            for spec in intermediate
        }
    resolved.target.training = _fill_defaults(resolved.target.training, target)
    resolved.evaluation.languages = languages
    if resolved.data.cache_dir is None:
        resolved.data.cache_dir = cache_root()
    if config.model.tiny is None:
        # an embedded model must be installed, a local folder must hold a model
        model_location(config.model.name, with_tokenizer=True)

    intermediate_name = None
    if resolved.intermediate is not None:
        payload = _intermediate_payload(resolved, intermediate)
        slug = "+".join(resolved.intermediate.tasks)
        intermediate_name = f"{slug}-s{resolved.seed}-{config_hash(payload)}"
    run_payload = semantic_dump(resolved)
    run_payload.pop("evaluation")  # evaluating differently reuses the trained model
    run_payload["specs"] = [_spec_payload(s) for s in [*intermediate, target]]
    slug = "+".join(resolved.intermediate.tasks) if resolved.intermediate else "baseline"
    run_name = f"{target.name}-{slug}-s{resolved.seed}-{config_hash(run_payload)}"
    return ResolvedExperiment(
        resolved, registry, intermediate, target, languages, intermediate_name, run_name
    )


def _task(registry: TaskRegistry, name: str, key: str) -> TaskSpec:
    if name not in registry:
        known = ", ".join(s.name for s in registry)
        raise XstiltsError(f"{key}: unknown task '{name}'; known tasks: {known}")
    spec = registry.get(name)
    try:
        get_format(spec.format)
        get_metric(spec.metric)
    except XstiltsError as err:
        raise XstiltsError(f"task '{name}' ({spec.origin}): {err}") from None
    return spec


def _languages(config: ExperimentConfig, target: TaskSpec) -> list[str]:
    wanted = config.evaluation.languages
    if wanted is None:
        return list(target.languages)
    unknown = [lang for lang in wanted if lang not in target.languages]
    if unknown:
        raise XstiltsError(
            f"evaluation.languages: {', '.join(unknown)} not among the languages of task "
            f"'{target.name}' ({', '.join(target.languages)})"
        )
    if not wanted:
        raise XstiltsError("evaluation.languages: give at least one language, or leave it unset")
    return list(wanted)


def _fill_defaults(training: TrainingConfig, spec: TaskSpec) -> TrainingConfig:
    return training.model_copy(
        update={
            "epochs": training.epochs or spec.epochs,
            "batch_size": training.batch_size or spec.batch_size,
            "max_length": training.max_length or spec.max_length,
        }
    )


def _task_settings(
    training: TrainingConfig, spec: TaskSpec, given: TaskSettings | None
) -> TaskSettings:
    """A task's settings in a multi-task phase: its own, else the phase's, else the spec's."""
    given = given or TaskSettings()
    return TaskSettings(
        batch_size=given.batch_size or training.batch_size or spec.batch_size,
        max_length=given.max_length or training.max_length or spec.max_length,
        gradient_accumulation_steps=given.gradient_accumulation_steps
        or training.gradient_accumulation_steps,
        adversarial=given.adversarial or training.adversarial,
    )


def _spec_payload(spec: TaskSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude={"origin", "base_dir", "description"})


def _intermediate_payload(config: ExperimentConfig, specs: list[TaskSpec]) -> dict[str, Any]:
    dumped = semantic_dump(config)
    return {
        "model": dumped.get("model"),
        "seed": dumped.get("seed"),
        "intermediate": dumped.get("intermediate"),
        "data": dumped.get("data"),
        "runtime": dumped.get("runtime"),
        "specs": [_spec_payload(s) for s in specs],
    }
