"""From a config to a fully resolved experiment: tasks checked, defaults filled, ids computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from xstilts.modeling.adapter_setup import (
    check_fusable,
    check_mergeable,
    fusion_config,
    library_config,
)
from xstilts.tasks import TaskRegistry, TaskSpec, load_registry
from xstilts.tasks.loading import with_label_file
from xstilts.tasks.profiles import profile_settings

LanguagesFrom = Literal["benchmark", "task", "evaluation.languages"]
"""benchmark: evaluation.benchmark's languages of the target; task: all of the target's
languages (no benchmark set, or a target of no benchmark); evaluation.languages: the
config's own list."""


@dataclass
class ResolvedExperiment:
    config: ExperimentConfig
    registry: TaskRegistry
    intermediate: list[TaskSpec]
    target: TaskSpec
    languages: list[str]
    intermediate_name: str | None
    run_name: str
    language_task: TaskSpec | None = None
    """The mlm task language adapters (MAD-X) are trained on."""
    language_adapter_names: dict[str, str] | None = None
    """Language -> the folder name of its adapter's training run."""
    stages: list[TaskSpec] = field(default_factory=list)
    """The tasks of ``target.stages``, in order."""
    languages_from: LanguagesFrom = "task"
    """What chose ``languages`` (see ``_languages``)."""
    reported_languages: list[str] = field(default_factory=list)
    """The languages results.json may report: evaluation.benchmark's of the target, else
    all of the target's (the scores of others stay in the run's evaluation records)."""

    @property
    def cache_dir(self) -> Path:
        assert self.config.data.cache_dir is not None
        return self.config.data.cache_dir


def resolve(
    config: ExperimentConfig,
    registry: TaskRegistry | None = None,
    *,
    planning: bool = False,
) -> ResolvedExperiment:
    """``registry``: the tasks, if already loaded from ``config.data.task_files``.
    ``planning``: only to print a plan, so a task's label file may be missing (its
    run ids are then provisional: they change once the labels are read)."""
    if config.data.source == "samples":
        config, registry = with_samples(config), None
    data_dir = config.data.data_dir
    if data_dir is not None and not data_dir.is_dir():
        what = "is a file" if data_dir.exists() else "does not exist"
        raise XstiltsError(f"data.data_dir: {data_dir} {what}; expected the folder of the data")
    registry = registry or load_registry(config.data.task_files)
    intermediate = []
    if config.intermediate is not None:
        for index, name in enumerate(config.intermediate.tasks):
            spec = _task(registry, name, f"intermediate.tasks[{index}]")
            intermediate.append(with_label_file(spec, data_dir, required=not planning))
    target = _task(registry, config.target.task, "target.task")
    target = with_label_file(target, data_dir, required=not planning)
    stages = [
        with_label_file(_stage_task(registry, config, index), data_dir, required=not planning)
        for index in range(len(config.target.stages))
    ]
    reported, languages_from = _allowed_languages(config, target, registry)
    languages, languages_from = _languages(config, target, reported, languages_from)
    _check_held_out(config, target, languages)
    language_task = None
    if config.language_adapters is not None:
        language_task = _task(registry, config.language_adapters.task, "language_adapters.task")
    _check_adapters(config, target, language_task)

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
    resolved.target.training = _fill_defaults(
        _with_profile(resolved.target.training, target, config.profile), target
    )
    for stage, spec in zip(resolved.target.stages, stages, strict=True):
        stage.training = _fill_defaults(_with_profile(stage.training, spec, config.profile), spec)
        stage.training = _with_target_adversarial(stage.training, resolved.target.training)
    resolved.evaluation.languages = languages
    if resolved.language_adapters is not None:
        assert language_task is not None
        madx = resolved.language_adapters
        madx.languages = madx.languages or list(language_task.languages)
        madx.training = _fill_defaults(madx.training, language_task)
    if resolved.data.cache_dir is None:
        resolved.data.cache_dir = cache_root()
    if config.model.tiny is None:
        # an embedded model must be installed, a local folder must hold a model
        model_location(config.model.name, with_tokenizer=True)

    language_adapter_names = None
    if resolved.language_adapters is not None:
        assert language_task is not None
        language_adapter_names = _language_adapter_names(resolved, language_task)
    intermediate_name = None
    if resolved.intermediate is not None:
        payload = _intermediate_payload(resolved, intermediate)
        if resolved.intermediate.adapters is not None and language_adapter_names:
            payload["stacked_on"] = language_adapter_names["en"]
        slug = "+".join(resolved.intermediate.tasks)
        intermediate_name = f"{slug}-s{resolved.seed}-{config_hash(payload)}"
    run_payload = semantic_dump(resolved)
    run_payload.pop("evaluation")  # evaluating differently reuses the trained model
    run_payload["specs"] = [_spec_payload(s) for s in [*intermediate, *stages, target]]
    slug = "+".join(resolved.intermediate.tasks) if resolved.intermediate else "baseline"
    run_name = f"{target.name}-{slug}-s{resolved.seed}-{config_hash(run_payload)}"
    return ResolvedExperiment(
        resolved,
        registry,
        intermediate,
        target,
        languages,
        intermediate_name,
        run_name,
        language_task,
        language_adapter_names,
        stages,
        languages_from,
        reported,
    )


def with_samples(config: ExperimentConfig) -> ExperimentConfig:
    """``data.source: samples`` as local files: the stand-in tasks written (once, and
    rewritten only if changed) under the cache folder, their task file added."""
    if config.data.source != "samples":
        return config
    if config.data.data_dir is not None:
        raise XstiltsError(
            "data.data_dir: not used with data.source 'samples' (the shipped samples are "
            "written under the cache folder); remove one of the two"
        )
    from xstilts.samples import write_stand_ins

    folder = (config.data.cache_dir or cache_root()) / "samples"
    task_file = write_stand_ins(folder)
    data = config.data.model_copy(
        update={
            "source": "local",
            "data_dir": folder,
            "task_files": [*config.data.task_files, task_file],
        }
    )
    return config.model_copy(update={"data": data})


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


def _stage_task(registry: TaskRegistry, config: ExperimentConfig, index: int) -> TaskSpec:
    """The task of ``target.stages[index]``: one that trains, on an encoder (not adapters)."""
    key = f"target.stages[{index}]"
    stage = config.target.stages[index]
    spec = _task(registry, stage.task, f"{key}.task")
    if not get_format(spec.format).trainable:
        raise XstiltsError(
            f"{key}.task: '{spec.name}' (format {spec.format}) trains nothing; a stage "
            "fine-tunes the encoder on a task with training data"
        )
    if config.target.adapters is not None or (
        config.intermediate is not None and config.intermediate.adapters is not None
    ):
        raise XstiltsError(
            f"{key}: stages fine-tune the whole encoder and cannot be combined with "
            "adapters (intermediate.adapters or target.adapters)"
        )
    if stage.carry_head:
        following = (
            config.target.stages[index + 1].task
            if index + 1 < len(config.target.stages)
            else config.target.task
        )
        receiver = registry.get(following) if following in registry else None
        # A multiple-choice or span head scores one option or token: any count of choices fits.
        same_shape = receiver is not None and (
            spec.format in ("multiple_choice", "span_qa") or receiver.labels == spec.labels
        )
        if receiver is None or receiver.format != spec.format or not same_shape:
            raise XstiltsError(
                f"{key}.carry_head: '{spec.name}' (format {spec.format}) cannot hand its head "
                f"to '{following}'; carry_head needs the same format (and labels)"
            )
    return spec


def _languages(
    config: ExperimentConfig, target: TaskSpec, allowed: list[str], chosen_by: LanguagesFrom
) -> tuple[list[str], LanguagesFrom]:
    """The languages to evaluate (``allowed`` unless evaluation.languages picks some of
    them), and what chose them."""
    wanted = config.evaluation.languages
    if wanted is None:
        return list(allowed), chosen_by
    unknown = [lang for lang in wanted if lang not in allowed]
    if unknown:
        whose = (
            f"{config.evaluation.benchmark}'s languages of task"
            if chosen_by == "benchmark"
            else "the languages of task"
        )
        raise XstiltsError(
            f"evaluation.languages: {', '.join(unknown)} not among {whose} "
            f"'{target.name}' ({', '.join(allowed)})"
        )
    if not wanted:
        raise XstiltsError("evaluation.languages: give at least one language, or leave it unset")
    return list(wanted), "evaluation.languages"


def _allowed_languages(
    config: ExperimentConfig, target: TaskSpec, registry: TaskRegistry
) -> tuple[list[str], LanguagesFrom]:
    """evaluation.benchmark's languages of the target when it is set and the target
    belongs to benchmarks; else all of the target's languages (a target of no benchmark,
    such as the CPU-scale stand-ins, stands in for one: it keeps its own languages)."""
    benchmark = config.evaluation.benchmark
    if benchmark is None or not target.benchmarks:
        return list(target.languages), "task"
    if benchmark not in target.benchmarks:
        members = ", ".join(s.name for s in registry if benchmark in s.benchmarks)
        raise XstiltsError(
            f"evaluation.benchmark: task '{target.name}' is not part of {benchmark} (it is "
            f"part of {', '.join(target.benchmarks)}); allowed targets: {members}, a task of "
            "no benchmark, or another evaluation.benchmark"
        )
    return list(target.benchmark_languages.get(benchmark, target.languages)), "benchmark"


def _check_held_out(config: ExperimentConfig, target: TaskSpec, languages: list[str]) -> None:
    """No test example may choose anything: where the target's validation split is read
    (English, to select the trained checkpoint; every language a format calibrates on,
    BUCC's threshold), it must not share data with the test split evaluated."""
    if config.evaluation.split != "test":
        return
    fmt = get_format(target.format)
    read = set(languages) if fmt.needs_calibration(target) else set()
    if fmt.trainable and "en" in languages:
        read.add("en")
    mode = "local" if config.data.source == "samples" else config.data.source
    for lang in sorted(read):
        shared = target.shared_data("validation", "test", lang, mode)
        if shared:
            raise XstiltsError(
                f"task '{target.name}' ({target.origin}): its validation and test splits in "
                f"'{lang}' read the same data ({shared[0]}), so test examples would choose "
                "the checkpoint or threshold; give validation other data, or a 'holdout' "
                "complementary to the test source's"
            )


def _with_profile(training: TrainingConfig, spec: TaskSpec, profile: str) -> TrainingConfig:
    """The profile's settings for the target task, where the config sets none itself."""
    chosen = {
        key: value
        for key, value in profile_settings(profile, spec.name).items()
        if key not in training.model_fields_set
    }
    return training.model_copy(update=chosen) if chosen else training


def _with_target_adversarial(stage: TrainingConfig, target: TrainingConfig) -> TrainingConfig:
    """A stage without adversarial settings of its own takes the target phase's:
    adversarial target training covers the whole target protocol (XCOPA's SIQA stage,
    Tatoeba's SQuAD stage, which is all the training a Tatoeba target has). A stage
    opts out with {method: none}. By value, not by the keys a file set: a grid hands
    its runs full config dumps."""
    if stage.adversarial is not None or target.adversarial is None:
        return stage
    return stage.model_copy(update={"adversarial": target.adversarial})


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


def _language_adapter_names(config: ExperimentConfig, spec: TaskSpec) -> dict[str, str]:
    """One training run per language, shared by every experiment with the same model,
    adapter kind, training settings, seed and text."""
    dumped = semantic_dump(config)
    madx = dict(dumped.get("language_adapters") or {})
    for key in ("languages", "fallback"):  # what is evaluated, not what is trained
        madx.pop(key, None)
    names = {}
    assert config.language_adapters is not None and config.language_adapters.languages
    for lang in config.language_adapters.languages:
        payload = {
            "model": dumped.get("model"),
            "language_adapters": madx,
            "language": lang,
            "data": dumped.get("data"),
            "runtime": dumped.get("runtime"),
            "spec": _spec_payload(spec),
        }
        names[lang] = f"{lang}-{spec.name}-{config_hash(payload)}"
    return names


def _check_adapters(
    config: ExperimentConfig, target: TaskSpec, language_task: TaskSpec | None
) -> None:
    """Adapter kinds and options the adapters library accepts, before any work."""
    inter = config.intermediate.adapters if config.intermediate is not None else None
    if inter is not None:
        library_config(inter.kind, inter.options, "intermediate.adapters")
    wanted = config.target.adapters
    if wanted is not None:
        if not get_format(target.format).trainable:
            raise XstiltsError(
                f"target.adapters: task '{target.name}' is evaluated straight from the "
                f"encoder (format {target.format}); it trains no adapter"
            )
        assert wanted.kind is not None or wanted.start in ("continue", "merge")
        if wanted.start == "fresh":
            library_config(str(wanted.kind), wanted.options, "target.adapters")
        elif wanted.start == "fusion":
            assert inter is not None
            fusion_config(str(wanted.kind), wanted.options, "target.adapters")
            check_fusable(inter.kind, inter.options, "intermediate.adapters")
        elif wanted.start == "merge":
            assert inter is not None
            check_mergeable(inter.kind, "intermediate.adapters")
    madx = config.language_adapters
    if madx is not None:
        assert language_task is not None
        if language_task.format != "mlm":
            raise XstiltsError(
                f"language_adapters.task: '{language_task.name}' has format "
                f"{language_task.format}; language adapters train on an 'mlm' task"
            )
        if "en" not in (madx.languages or language_task.languages):
            raise XstiltsError(
                f"language_adapters.task: '{language_task.name}' has no English text, and "
                "task adapters are trained on the English language adapter"
            )
        unknown = sorted(set(madx.languages or []) - set(language_task.languages))
        if unknown:
            raise XstiltsError(
                f"language_adapters.languages: {', '.join(unknown)} not among the languages "
                f"of task '{language_task.name}' ({', '.join(language_task.languages)})"
            )
        library_config(madx.kind, madx.options, "language_adapters")
