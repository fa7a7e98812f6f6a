"""The three phases of one experiment: intermediate training, target training, evaluation.

A run is a directory named after the hash of its resolved config. Finished
phases are found on disk and skipped; an interrupted phase resumes from its
last checkpoint. An intermediate phase lives in its own directory, keyed by
what it depends on, so every target run that starts from it reuses it.
"""

from __future__ import annotations

import functools
import logging
import os
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import PreTrainedTokenizerBase

from xstilts.config import (
    ExperimentConfig,
    TargetStage,
    TaskSettings,
    TrainingConfig,
    config_hash,
)
from xstilts.errors import XstiltsError
from xstilts.evaluate import EvaluationSet, Evaluator, LanguageSplit
from xstilts.experiment import (
    adapter_plans,
    evaluation_records,
    retention,
    run_folder,
    summaries,
)
from xstilts.experiment.evaluation_records import RESULTS_FILE, EvaluationKey
from xstilts.experiment.resolve import ResolvedExperiment, resolve
from xstilts.experiment.run_folder import STAGES_DIR, RunLock, damage_hint, marked, restart
from xstilts.experiment.runtime import get_accelerator, log_to_file, process_state
from xstilts.features import encode_split
from xstilts.formats import get_format
from xstilts.inference import accelerator_sharding
from xstilts.io import atomic_write_json, atomic_write_text, read_json
from xstilts.metrics import get_metric
from xstilts.modeling import (
    AdapterSetup,
    MultiTaskModel,
    attach_adapters,
    build_encoder,
    load_head_as,
    load_heads,
    load_tokenizer,
    load_trained_model,
    pretrained_fingerprint,
    use_language,
    weights_fingerprint,
)
from xstilts.processes import is_main
from xstilts.tasks.loading import LoadedSplit, load_split
from xstilts.tasks.spec import SplitName, TaskSpec
from xstilts.tracking import check_trackers, score_values, start_tracking, stop_tracking
from xstilts.train.adversarial import make_objective
from xstilts.train.batches import micro_batch_size
from xstilts.train.loop import BEST_DIR, TrainTask, phase_result, train_phase
from xstilts.train.sampling import sampling_weights

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
PARAMETERS_FILE = "parameters.json"
TRAIN_EXAMPLES_FILE = "train_examples.json"
"""Per task, the training examples a phase used (after caps and checks)."""
LANGUAGE_ADAPTERS_DIR = "language_adapters"


@dataclass
class _TaskPlan:
    """One task of a training phase with its resolved settings and weights."""

    spec: TaskSpec
    settings: TaskSettings
    weight: float
    validation_weight: float
    validation_language: str = "en"


@dataclass
class RunOutcome:
    run_dir: Path
    results: dict[str, Any]


def run_experiment(
    config: ExperimentConfig, out_root: Path, restart_phase: str | None = None
) -> RunOutcome:
    """Run (or finish, or reuse) every phase of one experiment; ``restart_phase``
    ('intermediate' or 'target') first throws that phase's work away."""
    experiment = resolve(config)
    run_dir = out_root / "runs" / experiment.run_name
    inter_dir = (
        out_root / "intermediate" / experiment.intermediate_name
        if experiment.intermediate_name
        else None
    )
    processes = process_state(config.runtime)
    with RunLock(run_dir, processes), marked(run_dir):
        if restart_phase is not None:
            restart(restart_phase, run_dir, inter_dir)
        run_folder.clean_scratch(run_dir)
        processes.wait_for_everyone()  # the others read the folder once the main cleaned it
        with log_to_file(run_dir / "run.log"), damage_hint(inter_dir):
            log.info("run %s", run_dir)
            _save_text(run_dir / CONFIG_FILE, experiment.config.to_yaml())
            runner = _Runner(experiment, run_dir, inter_dir, language_dirs(experiment, out_root))
            runner.check_inputs()
            runner.train_language_adapters()
            if inter_dir is not None and not phase_result(inter_dir).is_file():
                # Shared by every target run that starts from it: locked only to train it.
                with (
                    RunLock(inter_dir, processes),
                    marked(inter_dir),
                    log_to_file(inter_dir / "train.log"),
                ):
                    run_folder.clean_scratch(inter_dir)
                    processes.wait_for_everyone()
                    runner.train_intermediate()
            try:
                runner.train_target()
                results = runner.evaluate()
                runner.finish_run()
            finally:
                runner.close_tracking()
    return RunOutcome(run_dir, results)


def run_intermediate_phase(config: ExperimentConfig, out_root: Path) -> Path:
    """Train (or reuse) only the intermediate phase of an experiment; return its folder.

    Grids run this once per (model, intermediate option, seed) before the target runs
    that start from it.
    """
    experiment = resolve(config)
    if experiment.intermediate_name is None:
        raise XstiltsError("this experiment has no intermediate phase")
    inter_dir = out_root / "intermediate" / experiment.intermediate_name
    if phase_result(inter_dir).is_file():
        return inter_dir
    processes = process_state(config.runtime)
    with RunLock(inter_dir, processes), marked(inter_dir), log_to_file(inter_dir / "train.log"):
        run_folder.clean_scratch(inter_dir)
        processes.wait_for_everyone()
        runner = _Runner(experiment, inter_dir, inter_dir, language_dirs(experiment, out_root))
        runner.check_intermediate_inputs()
        runner.train_language_adapters()
        runner.train_intermediate()
    return inter_dir


def _may_leave_unused(plans: list[_TaskPlan], setup: AdapterSetup | None) -> bool:
    """Whether a step may leave trained parameters without a gradient (which DDP must
    then look for): the heads of tasks not drawn, or adapters a step does not pass
    through (a task's own adapters, fusion, MAD-X's language adapters)."""
    return len({plan.spec.head_name for plan in plans}) > 1 or setup is not None


def _save_text(path: Path, text: str) -> None:
    """Write a run's file: among several processes, the main one writes it."""
    if is_main():
        atomic_write_text(path, text)


def _single_task_settings(training: TrainingConfig) -> TaskSettings:
    """The task settings of a one-task phase: the phase's own."""
    return TaskSettings(
        batch_size=training.batch_size,
        max_length=training.max_length,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        adversarial=training.adversarial,
    )


def run_language_adapter_phase(config: ExperimentConfig, out_root: Path, name: str) -> Path:
    """Train (or reuse) one of an experiment's language adapters, the one whose folder
    is ``name``; grids run this before the runs that stack task adapters on it."""
    experiment = resolve(config)
    folders = {
        folder.name: (lang, folder) for lang, folder in language_dirs(experiment, out_root).items()
    }
    if name not in folders:
        raise XstiltsError(f"this experiment has no language adapter run '{name}'")
    lang, folder = folders[name]
    runner = _Runner(experiment, folder, None, {lang: folder})
    runner.check_intermediate_inputs()
    runner.train_language_adapters()
    return folder


def load_task_split(
    spec: TaskSpec,
    split: SplitName,
    lang: str,
    config: ExperimentConfig,
    max_examples: int | None,
) -> LoadedSplit:
    """One split of one language, checked by its format and (with ``max_examples``)
    subsampled with the run's seed, as every phase of a run loads it."""
    fmt = get_format(spec.format)
    return load_split(
        spec,
        split,
        lang,
        fields=fmt.fields,
        check_row=fmt.check_row(spec),
        labelled=functools.partial(fmt.is_labelled, spec) if split != "test" else None,
        subsample=fmt.subsample,
        mode=config.data.source,
        data_dir=config.data.data_dir,
        max_examples=max_examples,
        subsample_seed=config.data.subsample_seed_for(config.seed),
    )


def language_dirs(experiment: ResolvedExperiment, out_root: Path) -> dict[str, Path]:
    """Each language adapter's training folder (none without language_adapters)."""
    names = experiment.language_adapter_names or {}
    return {lang: out_root / LANGUAGE_ADAPTERS_DIR / name for lang, name in names.items()}


class _Runner:
    def __init__(
        self,
        experiment: ResolvedExperiment,
        run_dir: Path,
        inter_dir: Path | None,
        language_dirs: dict[str, Path],
    ):
        self.experiment = experiment
        self.config = experiment.config
        self.run_dir = run_dir
        self.out_root = run_dir.parent.parent  # every phase folder is <out>/<kind>/<name>
        self.inter_dir = inter_dir
        self.language_dirs = language_dirs
        check_trackers(self.config.runtime.log_with)
        self.accelerator: Accelerator = get_accelerator(self.config.runtime)
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(self.config.model)
        self.splits: dict[tuple[str, SplitName, str, int | None], LoadedSplit] = {}
        self._untracked = self.accelerator
        self._tracked: Path | None = None
        """The phase folder whose tracker run is open (on ``self.accelerator``)."""

    # -- checks before any training ---------------------------------------------
    def check_inputs(self) -> None:
        """Read and validate every split the remaining phases need."""
        self.check_intermediate_inputs()
        self.check_target_inputs()

    def check_intermediate_inputs(self) -> None:
        cfg = self.config
        for lang, phase_dir in self.language_dirs.items():
            if not phase_result(phase_dir).is_file():
                assert cfg.language_adapters is not None
                spec = self._language_task(lang)
                training = cfg.language_adapters.training
                self._check_batch("language_adapters.training", _single_task_settings(training))
                self._load_training_splits(spec, training, lang)
        if self.inter_dir is not None and not phase_result(self.inter_dir).is_file():
            assert cfg.intermediate is not None
            for spec in self.experiment.intermediate:
                key = f"intermediate.task_settings.{spec.name} (or intermediate.training)"
                self._check_batch(key, cfg.intermediate.task_settings[spec.name])
                self._load_training_splits(spec, cfg.intermediate.training)

    def check_target_inputs(self) -> None:
        cfg = self.config
        target = self.experiment.target
        fmt = get_format(target.format)
        fmt.options(target)
        if fmt.trainable and not phase_result(self.run_dir).is_file():
            self._check_batch("target.training", _single_task_settings(cfg.target.training))
            self._load_training_splits(target, cfg.target.training)
        for index, (stage, spec, folder) in enumerate(self._stages()):
            if not phase_result(folder).is_file():
                key = f"target.stages[{index}].training"
                self._check_batch(key, _single_task_settings(stage.training))
                self._load_training_splits(spec, stage.training)
        for lang in self.experiment.languages:
            self._load(target, cfg.evaluation.split, lang, cfg.evaluation.max_examples)
            if fmt.needs_calibration(target):
                self._load(target, "validation", lang, cfg.evaluation.max_examples)

    def _check_batch(self, key: str, settings: TaskSettings) -> None:
        """A phase's batch must split equally over the processes and micro-batches."""
        assert settings.batch_size is not None
        accumulation = settings.gradient_accumulation_steps or 1
        micro_batch_size(key, settings.batch_size, accumulation, self.accelerator.num_processes)

    def _train_split(self, spec: TaskSpec, training: TrainingConfig) -> LoadedSplit:
        """The training examples: the train splits of all of the task's training
        languages (English, unless the spec says otherwise), concatenated.
        ``max_train_examples`` caps the whole, a random subset of all languages together,
        so that a capped multilingual task trains on as many examples as a capped
        English one."""
        cap = training.max_train_examples
        if len(spec.train_languages) == 1:
            return self._load(spec, "train", spec.train_languages[0], cap)
        key = (spec.name, "train", "+".join(spec.train_languages), cap)
        if key not in self.splits:
            parts = [self._load(spec, "train", lang, None) for lang in spec.train_languages]
            examples = datasets.concatenate_datasets([part.examples for part in parts])
            payload: dict[str, Any] = {"parts": [part.fingerprint for part in parts]}
            if cap is not None and len(examples) > cap:
                seed = self.config.data.subsample_seed_for(self.config.seed)
                examples = get_format(spec.format).subsample(examples, cap, seed)
                payload["subsample"] = f"{cap}@{seed}"
            fingerprint = config_hash(payload)
            dropped = sum(part.dropped for part in parts)
            self.splits[key] = LoadedSplit(
                spec.name, "train", key[2], examples, fingerprint, dropped
            )
        return self.splits[key]

    def _load_training_splits(
        self, spec: TaskSpec, training: TrainingConfig, validation_language: str = "en"
    ) -> None:
        self._train_split(spec, training)
        validation = self._load(spec, "validation", validation_language, training.max_eval_examples)
        if get_format(spec.format).references(spec, validation.examples) is None:
            raise XstiltsError(
                f"task '{spec.name}': the {validation_language} validation split has no gold "
                "labels, and training selects its best checkpoint on it"
            )

    def _load(
        self, spec: TaskSpec, split: SplitName, lang: str, max_examples: int | None
    ) -> LoadedSplit:
        # The limit is part of the key: a split loaded for one phase with its own limit
        # must not stand in for the same split with another limit (same config, same numbers).
        key = (spec.name, split, lang, max_examples)
        if key not in self.splits:
            loaded = load_task_split(spec, split, lang, self.config, max_examples)
            if split == "train":
                loaded = self._filter_training(spec, loaded)
            self.splits[key] = loaded
        return self.splits[key]

    def _filter_training(self, spec: TaskSpec, loaded: LoadedSplit) -> LoadedSplit:
        kept, skipped = get_format(spec.format).prepare_training_examples(spec, loaded.examples)
        for reason, count in skipped.items():
            log.warning("task '%s': skipped %d training examples: %s", spec.name, count, reason)
        if not skipped:
            return loaded
        if len(kept) == 0:
            raise XstiltsError(f"task '{spec.name}': no training example is left after checks")
        fingerprint = f"{loaded.fingerprint}-checked"
        return LoadedSplit(spec.name, "train", loaded.language, kept, fingerprint, loaded.dropped)

    # -- phases -------------------------------------------------------------------
    def train_language_adapters(self) -> None:
        """Train each language adapter that is not trained yet (MAD-X); every run with
        the same model, adapter settings and text reuses them."""
        for lang, phase_dir in self.language_dirs.items():
            if phase_result(phase_dir).is_file():
                continue
            lock = RunLock(phase_dir, self.accelerator)
            with lock, marked(phase_dir), log_to_file(phase_dir / "train.log"):
                run_folder.clean_scratch(phase_dir)
                self.accelerator.wait_for_everyone()
                self._train_language_adapter(lang, phase_dir)

    def _train_language_adapter(self, lang: str, phase_dir: Path) -> None:
        madx = self.config.language_adapters
        assert madx is not None
        _save_text(phase_dir / CONFIG_FILE, self.config.to_yaml())
        spec = self._language_task(lang)
        setup = adapter_plans.language_adapter_setup(madx, lang, spec.head_name)
        training = madx.training
        settings = _single_task_settings(training)
        plan = _TaskPlan(spec, settings, 1.0, 1.0, validation_language=lang)
        self._train([plan], training, phase_dir, None, setup, seed=madx.seed)

    def _language_task(self, lang: str) -> TaskSpec:
        """The language adapters' mlm task, trained on ``lang``'s text alone."""
        assert self.experiment.language_task is not None
        return self.experiment.language_task.model_copy(update={"train_languages": [lang]})

    def train_intermediate(self) -> None:
        cfg = self.config
        assert self.inter_dir is not None and cfg.intermediate is not None
        if phase_result(self.inter_dir).is_file():
            log.info("intermediate phase already trained: reusing %s", self.inter_dir)
            return
        _save_text(self.inter_dir / CONFIG_FILE, cfg.to_yaml())
        inter = cfg.intermediate
        sizes = {
            s.name: len(self._train_split(s, inter.training).examples)
            for s in self.experiment.intermediate
        }
        if is_main():
            atomic_write_json(self.inter_dir / TRAIN_EXAMPLES_FILE, sizes)
        draw = dict(zip(sizes, sampling_weights(sizes, inter.sampler), strict=True))
        log.info(
            "tasks: %s",
            ", ".join(f"{name} {sizes[name]} examples (weight {draw[name]:g})" for name in sizes),
        )
        validation = inter.validation_weights or {}
        plans = [
            _TaskPlan(
                spec,
                inter.task_settings[spec.name],
                draw[spec.name],
                validation.get(spec.name, 1.0),
            )
            for spec in self.experiment.intermediate
        ]
        self._train(plans, inter.training, self.inter_dir, None, self._intermediate_setup())

    def _stages(self) -> list[tuple[TargetStage, TaskSpec, Path]]:
        """Each target stage with its task and its phase folder inside the run."""
        return [
            (stage, spec, self.run_dir / STAGES_DIR / f"{index + 1}-{spec.name}")
            for index, (stage, spec) in enumerate(
                zip(self.config.target.stages, self.experiment.stages, strict=True)
            )
        ]

    def train_stages(self) -> None:
        """Train, in order, each target stage not trained yet; each starts from the
        encoder (and, with carry_head, the head) the one before it left."""
        start = self._encoder_before_stages()
        handed_head: tuple[str, Path] | None = None
        for stage, spec, folder in self._stages():
            if not phase_result(folder).is_file():
                folder.mkdir(parents=True, exist_ok=True)
                with marked(folder), log_to_file(folder / "train.log"):
                    run_folder.clean_scratch(folder)
                    log.info("target stage %s: training from %s", folder.name, start or "scratch")
                    _save_text(folder / CONFIG_FILE, self.config.to_yaml())
                    plan = _TaskPlan(spec, _single_task_settings(stage.training), 1.0, 1.0)
                    self._train(
                        [plan], stage.training, folder, start, None, handed_head=handed_head
                    )
            start = folder / BEST_DIR
            handed_head = (spec.head_name, start) if stage.carry_head else None

    def _encoder_before_stages(self) -> Path | None:
        """The intermediate phase's encoder when it trained one, else the pretrained one."""
        if self.inter_dir is None or self._intermediate_setup() is not None:
            return None
        return self.inter_dir / BEST_DIR

    def _handed_head(self) -> tuple[str, Path] | None:
        """The last stage's head and best model, when it hands its head to the target."""
        stages = self._stages()
        if not stages or not stages[-1][0].carry_head:
            return None
        _, spec, folder = stages[-1]
        return spec.head_name, folder / BEST_DIR

    def train_target(self) -> None:
        self.train_stages()
        if not get_format(self.experiment.target.format).trainable:
            log.info("%s is evaluated straight from the encoder", self.experiment.target.name)
            return
        if phase_result(self.run_dir).is_file():
            log.info("target phase already trained: reusing %s", self.run_dir / BEST_DIR)
            return
        if is_main():  # they scored a model about to be replaced
            evaluation_records.clear(self.run_dir)
        self._train_own_fusion_adapter()
        training = self.config.target.training
        settings = _single_task_settings(training)
        plan = _TaskPlan(self.experiment.target, settings, 1.0, 1.0)
        self._train(
            [plan],
            training,
            self.run_dir,
            self._target_start(),
            self._target_setup(),
            handed_head=self._handed_head(),
        )

    def _own_fusion_adapter_dir(self) -> Path | None:
        """Where the target task's own adapter trains before AdapterFusion fuses it with
        the intermediate ones (``target.adapters.include_target``); else None."""
        if adapter_plans.fusion_target_adapter_setup(self.experiment, {}) is None:
            return None
        return self.run_dir / STAGES_DIR / f"fusion-{self.experiment.target.name}"

    def _train_own_fusion_adapter(self) -> None:
        """AdapterFusion's first stage for the target task (Pfeiffer et al. 2021): its own
        adapter, trained alone on it, from the encoder the fusion phase starts from."""
        folder = self._own_fusion_adapter_dir()
        if folder is None or phase_result(folder).is_file():
            return
        folder.mkdir(parents=True, exist_ok=True)
        with marked(folder), log_to_file(folder / "train.log"):
            run_folder.clean_scratch(folder)
            log.info("AdapterFusion: training the target task's own adapter in %s", folder)
            _save_text(folder / CONFIG_FILE, self.config.to_yaml())
            training = self.config.target.training
            plan = _TaskPlan(self.experiment.target, _single_task_settings(training), 1.0, 1.0)
            setup = adapter_plans.fusion_target_adapter_setup(self.experiment, self.language_dirs)
            self._train([plan], training, folder, self._target_start(), setup)

    def _train(
        self,
        plans: list[_TaskPlan],
        training: TrainingConfig,
        phase_dir: Path,
        init_from: Path | None,
        setup: AdapterSetup | None,
        seed: int | None = None,
        handed_head: tuple[str, Path] | None = None,
    ) -> None:
        """``handed_head``: (head name, best folder) of a stage whose head the (single)
        task of this phase starts from."""
        assert training.epochs is not None
        seed = self.config.seed if seed is None else seed
        model = self._build_model([plan.spec for plan in plans], init_from, setup, seed)
        if handed_head is not None:
            load_head_as(model, handed_head[1], handed_head[0], plans[0].spec.head_name)
        if self.accelerator.is_main_process:
            summary = model.adapters.summary() if model.adapters is not None else None
            atomic_write_json(
                phase_dir / PARAMETERS_FILE, {**model.parameter_counts(), "adapters": summary}
            )
        tasks = []
        for plan in plans:
            spec, settings = plan.spec, plan.settings
            assert settings.max_length is not None and settings.batch_size is not None
            train = self._train_split(spec, training)
            validation = self._load(
                spec, "validation", plan.validation_language, training.max_eval_examples
            )
            tasks.append(
                TrainTask(
                    spec=spec,
                    fmt=get_format(spec.format),
                    train_features=self._encode(spec, train, settings.max_length),
                    validation_examples=validation.examples,
                    validation_features=self._encode(spec, validation, settings.max_length),
                    batch_size=settings.batch_size,
                    accumulation=settings.gradient_accumulation_steps or 1,
                    weight=plan.weight,
                    validation_weight=plan.validation_weight,
                    objective=make_objective(settings.adversarial),
                )
            )
        phase = self._phase_kind(phase_dir)
        self._open_tracking(phase_dir, phase)
        try:
            train_phase(
                model,
                tasks,
                training,
                epochs=training.epochs,
                phase_dir=phase_dir,
                seed=seed,
                tokenizer=self.tokenizer,
                accelerator=self.accelerator,
                compile_encoder=self.config.runtime.compile,
                find_unused_parameters=_may_leave_unused(plans, setup),
            )
            self.accelerator.free_memory()
            self._keep_only(retention.removable_after_phase(phase_dir, self.config.runtime.keep))
        finally:
            if phase != "target":  # a target run's tracker run also gets its scores
                self.close_tracking()

    # -- experiment trackers (xstilts/tracking.py) ----------------------------------
    def _phase_kind(self, phase_dir: Path) -> str:
        if phase_dir in self.language_dirs.values():
            return "language_adapter"
        if phase_dir == self.inter_dir:
            return "intermediate"
        return "target" if phase_dir == self.run_dir else "stage"

    def _open_tracking(self, phase_dir: Path, phase: str) -> None:
        """Open the tracker run of ``phase_dir`` (one phase folder at a time)."""
        if not self.config.runtime.log_with or self._tracked == phase_dir:
            return
        self.close_tracking()
        self.accelerator = get_accelerator(self.config.runtime, tracking_dir=phase_dir)
        start_tracking(self.accelerator, self.config, phase_dir, phase)
        self._tracked = phase_dir

    def close_tracking(self) -> None:
        if self._tracked is None:
            return
        stop_tracking(self.accelerator)
        self.accelerator, self._tracked = self._untracked, None

    def _track_scores(self, results: dict[str, Any], fresh: bool) -> None:
        """Log the final scores to the run's tracker run: when this call trained the
        target or evaluated a language (a finished run run again logs nothing)."""
        if not self.config.runtime.log_with or (not fresh and self._tracked is None):
            return
        self._open_tracking(self.run_dir, "target")
        training = results.get("training") or {}
        self.accelerator.log(score_values(results), step=training.get("steps") or 0)

    def _keep_only(self, removable: list[Path]) -> None:
        """Delete what ``runtime.keep`` does not keep (on the main process)."""
        if removable and self.accelerator.is_main_process:
            freed = retention.remove(removable)
            log.info("runtime.keep %s: freed %.1f MB", self.config.runtime.keep, freed / 1e6)

    def finish_run(self) -> None:
        """Apply ``runtime.keep`` to the run folder once results.json is written."""
        self._keep_only(retention.removable_after_run(self.run_dir, self.config.runtime.keep))

    def _relative(self, folder: Path) -> str:
        """``folder`` as a path from the output root: run folders stay movable."""
        return os.path.relpath(folder, self.out_root)

    def _build_model(
        self,
        specs: list[TaskSpec],
        init_from: Path | None,
        setup: AdapterSetup | None = None,
        seed: int | None = None,
    ) -> MultiTaskModel:
        set_seed(self.config.seed if seed is None else seed)  # heads and adapters start random
        model_config = self.config.model
        encoder = build_encoder(model_config, self.tokenizer, init_from)
        pretrained = pretrained_fingerprint(model_config, self.tokenizer)
        base = {
            "model": model_config.display_name,
            "revision": model_config.revision,
            "start": self._relative(init_from) if init_from else model_config.display_name,
            "sha256": weights_fingerprint(encoder) if init_from else pretrained,
        }
        heads, formats = {}, {}
        for spec in specs:
            fmt = get_format(spec.format)
            if spec.head_name not in heads:
                heads[spec.head_name] = fmt.build_head(spec, encoder)
                formats[spec.head_name] = fmt
        routes = attach_adapters(encoder, setup, list(heads)) if setup is not None else None
        return MultiTaskModel(encoder, heads, formats, base=base, adapters=setup, routes=routes)

    # -- adapters -----------------------------------------------------------------
    def _intermediate_setup(self) -> AdapterSetup | None:
        return adapter_plans.intermediate_setup(self.experiment, self.language_dirs)

    def _target_setup(self) -> AdapterSetup | None:
        return adapter_plans.target_setup(
            self.experiment, self.inter_dir, self.language_dirs, self._own_fusion_adapter_dir()
        )

    def _target_start(self) -> Path | None:
        """The encoder the target phase starts from: the last stage's, else the
        intermediate phase's when it trained the encoder itself, else the pretrained
        one (its adapters come on top)."""
        stages = self._stages()
        if stages:
            return stages[-1][2] / BEST_DIR
        return self._encoder_before_stages()

    def _encode(self, spec: TaskSpec, loaded: LoadedSplit, max_length: int):
        fmt = get_format(spec.format)
        cache = self.experiment.cache_dir
        with self.accelerator.main_process_first():  # the others read what it cached
            return encode_split(loaded, fmt, spec, self.tokenizer, max_length, cache)

    # -- evaluation ---------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Score every configured language, reusing the scores of languages already
        evaluated on the same data with the same split and example limit."""
        cfg = self.config
        spec = self.experiment.target
        key = EvaluationKey(cfg.evaluation.split, cfg.evaluation.max_examples)
        record = evaluation_records.load_record(self.run_dir, key)
        pending = []
        for lang in self.experiment.languages:
            loaded, calibration = self._language_data(spec, key.split, lang)
            data = "+".join(s.fingerprint for s in (loaded, calibration) if s is not None)
            previous = record["languages"].get(lang)
            if previous is not None and previous.get("data") == data:
                log.info(
                    "%s %s: already evaluated (%s), reusing the scores", spec.name, lang, key.name
                )
                continue
            pending.append((lang, loaded, calibration, data))
        self._check_model_kept(spec, [lang for lang, *_ in pending])
        evaluator: Evaluator | None = None
        for lang, loaded, calibration, data in pending:
            log.info("evaluating language %s (%s)", lang, key.name)
            evaluator = evaluator or self._evaluator(spec)
            adapter = self._use_language_adapter(evaluator.model, lang)
            item = LanguageSplit(lang, self._evaluation_set(spec, loaded))
            if calibration is not None:
                item.calibration_data = self._evaluation_set(spec, calibration)
            scores = evaluator.language(item, key.split, key.predictions_dir(self.run_dir))
            if "predictions" in scores:  # relative: the run folder may move
                scores["predictions"] = os.path.relpath(scores["predictions"], self.run_dir)
            record["languages"][lang] = {**scores, "data": data, **adapter}
            if self.accelerator.is_main_process:
                evaluation_records.save_record(self.run_dir, key, record)
        results = self._results(spec, record)
        self._track_scores(results, fresh=evaluator is not None)
        fullest = evaluation_records.fullest_key(self.run_dir, key.split)
        keeps_fuller = fullest is not None and fullest.fullness() > key.fullness()
        if self.accelerator.is_main_process and not keeps_fuller:
            atomic_write_json(self.run_dir / RESULTS_FILE, results)
        return results

    def _check_model_kept(self, spec: TaskSpec, languages: list[str]) -> None:
        """Refuse languages still to evaluate once ``keep: results`` removed the trained
        model they need (before anything is written: the stored scores stay)."""
        if not languages or not get_format(spec.format).trainable:
            return
        if retention.model_removed(self.run_dir):
            raise XstiltsError(
                f"{self.run_dir}: cannot evaluate {', '.join(languages)}, as the target's "
                "trained model was removed once its scores were written (runtime.keep: "
                "results; results.json keeps them): set runtime.keep: best and run it again "
                "with --restart-phase target (in a grid: delete this run folder) to train it "
                "again"
            )

    def _use_language_adapter(self, model: MultiTaskModel, lang: str) -> dict[str, Any]:
        """MAD-X: swap in ``lang``'s language adapter; say which one ran (recorded with
        the language's scores)."""
        madx = self.config.language_adapters
        if madx is None or model.adapters is None:
            return {}
        used = use_language(model.routes, model.adapters, lang, madx.fallback)
        if used is not None and used != lang:
            log.info("%s has no language adapter: using %s's", lang, used)
        return {"language_adapter": used}

    def _evaluator(self, spec: TaskSpec) -> Evaluator:
        fmt = get_format(spec.format)
        if fmt.trainable:
            best = self.run_dir / BEST_DIR
            if self._target_keeps_adapters():
                model = self._build_model([spec], self._target_start(), self._target_setup())
                load_trained_model(model, best)
            else:
                model = self._build_model([spec], best)
                load_heads(model, best)
        elif self._stages():  # zero-shot from the encoder the last stage fine-tuned
            model = self._build_model([spec], self._target_start())
        else:  # zero-shot from the encoder: the intermediate one, or the pretrained one
            model = self._build_model([spec], self.inter_dir / BEST_DIR if self.inter_dir else None)
        model.to(self.accelerator.device)
        return Evaluator(
            model,
            spec,
            fmt,
            tokenizer=self.tokenizer,
            batch_size=self.config.evaluation.batch_size,
            device=self.accelerator.device,
            sharding=accelerator_sharding(self.accelerator),
        )

    def _target_keeps_adapters(self) -> bool:
        """Whether the target's best model is adapters on a base (not a whole encoder)."""
        wanted = self.config.target.adapters
        return wanted is not None and wanted.start != "merge"

    def _language_data(
        self, spec: TaskSpec, split: SplitName, lang: str
    ) -> tuple[LoadedSplit, LoadedSplit | None]:
        """A language's evaluation examples, and its validation split when the format
        calibrates on it (tokenised only if the language is evaluated)."""
        limit = self.config.evaluation.max_examples
        loaded = self._load(spec, split, lang, limit)
        if not get_format(spec.format).needs_calibration(spec):
            return loaded, None
        return loaded, self._load(spec, "validation", lang, limit)

    def _evaluation_set(self, spec: TaskSpec, loaded: LoadedSplit) -> EvaluationSet:
        max_length = self.config.target.training.max_length
        assert max_length is not None
        return EvaluationSet(loaded.examples, self._encode(spec, loaded, max_length))

    def _intermediate_train_examples(self) -> int | None:
        """How many examples the intermediate phase trained on (all its tasks)."""
        if self.inter_dir is None or not (self.inter_dir / TRAIN_EXAMPLES_FILE).is_file():
            return None
        return sum(read_json(self.inter_dir / TRAIN_EXAMPLES_FILE).values())

    def _results(self, spec: TaskSpec, record: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        reported = set(self.experiment.reported_languages)
        # Under a benchmark, only its languages: the averages are the benchmark's.
        scores: dict[str, dict[str, Any]] = {
            lang: values for lang, values in record["languages"].items() if lang in reported
        }
        main_key = get_metric(spec.metric).main_key
        trained = phase_result(self.run_dir).is_file()
        training = read_json(phase_result(self.run_dir)) if trained else None
        validation, validation_from = summaries.validation_score(training, scores)
        values = {lang: s[main_key] for lang, s in scores.items() if main_key in s}
        zero_shot = [v for lang, v in values.items() if lang != "en"]
        english = None
        if "en" in values:
            english = {"score": values["en"], "split": record["split"]}
        elif training is not None:
            english = {"score": training["best_score"], "split": "validation"}
        return {
            "run_id": self.run_dir.name,
            "run_dir": self._relative(self.run_dir),
            "model": cfg.model.display_name,
            "seed": cfg.seed,
            "intermediate_tasks": cfg.intermediate.tasks if cfg.intermediate else [],
            "intermediate_run": self.inter_dir.name if self.inter_dir else None,
            "intermediate_option": cfg.grid_option
            or ("+".join(cfg.intermediate.tasks) if cfg.intermediate else "baseline"),
            "target_stages": [stage.task for stage in cfg.target.stages],
            "intermediate_max_train_examples": (
                cfg.intermediate.training.max_train_examples if cfg.intermediate else None
            ),
            "intermediate_train_examples": self._intermediate_train_examples(),
            "adversarial": adversarial_summary(cfg),
            "adapters": adapter_plans.adapters_summary(cfg),
            "parameters": {
                phase: read_json(folder / PARAMETERS_FILE)
                for phase, folder in (("intermediate", self.inter_dir), ("target", self.run_dir))
                if folder is not None and (folder / PARAMETERS_FILE).is_file()
            },
            "target_task": spec.name,
            "task_family": spec.family,
            "benchmarks": spec.benchmarks,
            "metric": main_key,
            "split": record["split"],
            "evaluation": {"split": record["split"], "max_examples": record["max_examples"]},
            "benchmark": cfg.evaluation.benchmark,
            "languages_from": self.experiment.languages_from,
            "languages": scores,
            "average": statistics.fmean(values.values()) if values else None,
            "average_zero_shot": statistics.fmean(zero_shot) if zero_shot else None,
            "benchmark_averages": summaries.benchmark_averages(
                spec, scores, main_key, cfg.evaluation.benchmark
            ),
            "english": english,
            "validation_score": validation,
            "validation_from": validation_from,
            "training": (
                {k: training[k] for k in ("steps", "best_step", "best_score")}
                if training is not None
                else None
            ),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def adversarial_summary(config: ExperimentConfig) -> str:
    """Which phases (and tasks) train adversarially, e.g. 'intermediate:freelb' or
    'intermediate:mnli=smart,target:fgm'; '' for standard training throughout."""
    parts = []
    if config.intermediate is not None:
        inter = config.intermediate
        methods = {
            task: settings.adversarial.method
            for task, settings in inter.task_settings.items()
            if settings.adversarial is not None and settings.adversarial.method != "none"
        }
        if methods and set(methods) == set(inter.tasks) and len(set(methods.values())) == 1:
            parts.append(f"intermediate:{next(iter(methods.values()))}")
        elif methods:
            parts.append("intermediate:" + ",".join(f"{t}={m}" for t, m in sorted(methods.items())))
    target = config.target.training.adversarial
    if target is not None and target.method != "none":
        parts.append(f"target:{target.method}")
    return ",".join(parts)
