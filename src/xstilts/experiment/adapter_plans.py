"""Which adapters each phase of an experiment carries and trains, from its config.

The pipeline asks this module for a phase's ``AdapterSetup`` and hands it to
modeling, which builds it; nothing else about adapters reaches the pipeline.
Adapter names: ``task_<head>`` for an intermediate task (one per head-sharing
group), ``target_<task>`` for a fresh target adapter (or the target task's own
adapter that AdapterFusion fuses), ``lang_<code>`` for a language adapter (MAD-X).
"""

from __future__ import annotations

from pathlib import Path

from xstilts.config import ExperimentConfig, LanguageAdaptersConfig
from xstilts.experiment.resolve import ResolvedExperiment
from xstilts.modeling import AdapterSetup, AdapterSpec, Restored
from xstilts.train.loop import BEST_DIR


def task_adapter_name(head: str) -> str:
    return f"task_{head}"


def target_adapter_name(task: str) -> str:
    return f"target_{task}"


def language_adapter_name(lang: str) -> str:
    return f"lang_{lang}"


def language_adapter_setup(madx: LanguageAdaptersConfig, lang: str, head: str) -> AdapterSetup:
    """Training ``lang``'s language adapter: it alone is active, under the MLM head."""
    name = language_adapter_name(lang)
    return AdapterSetup(
        new=[AdapterSpec(name, madx.kind, madx.options)],
        head_adapters={head: None},
        trained=[name],
        language_adapters={lang: name},
        training_language=lang,
    )


def intermediate_setup(
    experiment: ResolvedExperiment, language_dirs: dict[str, Path]
) -> AdapterSetup | None:
    """One adapter per task (per head-sharing group) over the shared encoder."""
    inter = experiment.config.intermediate
    if inter is None or inter.adapters is None:
        return None
    settings = inter.adapters
    names = {spec.head_name: task_adapter_name(spec.head_name) for spec in experiment.intermediate}
    setup = AdapterSetup(
        new=[AdapterSpec(name, settings.kind, settings.options) for name in names.values()],
        head_adapters=dict(names),
        trained=list(names.values()),
        train_encoder=settings.train == "adapters_and_encoder",
        also_train=tuple(settings.also_train),
    )
    return _with_language_adapters(setup, experiment.config, language_dirs)


def fusion_target_adapter_setup(
    experiment: ResolvedExperiment, language_dirs: dict[str, Path]
) -> AdapterSetup | None:
    """AdapterFusion's first stage for the target task (Pfeiffer et al. 2021): the target
    task's own adapter, of the intermediate adapters' kind and options, trained alone
    on the target task, to be fused with the intermediate ones; None unless the target
    fuses it (``target.adapters.include_target``)."""
    wanted = experiment.config.target.adapters
    if wanted is None or wanted.start != "fusion" or not wanted.include_target:
        return None
    own = _own_target_adapter(experiment)
    setup = AdapterSetup(
        new=[own], head_adapters={experiment.target.head_name: own.name}, trained=[own.name]
    )
    return _with_language_adapters(setup, experiment.config, language_dirs)


def _own_target_adapter(experiment: ResolvedExperiment) -> AdapterSpec:
    inter = experiment.config.intermediate
    assert inter is not None and inter.adapters is not None
    name = target_adapter_name(experiment.target.name)
    return AdapterSpec(name, inter.adapters.kind, inter.adapters.options)


def target_setup(
    experiment: ResolvedExperiment,
    inter_dir: Path | None,
    language_dirs: dict[str, Path],
    own_adapter_dir: Path | None = None,
) -> AdapterSetup | None:
    """The target phase's adapters: see ``TargetAdapterConfig`` for the four starts.
    ``own_adapter_dir``: the phase folder that trained the target task's own adapter
    (``fusion_target_adapter_setup``), for a fusion that includes it."""
    wanted = experiment.config.target.adapters
    if wanted is None:
        return None
    head = experiment.target.head_name
    setup = AdapterSetup(
        train_encoder=wanted.train == "adapters_and_encoder",
        also_train=tuple(wanted.also_train),
    )
    intermediate = intermediate_setup(experiment, {})
    restored = None
    if intermediate is not None:
        assert inter_dir is not None
        restored = Restored(inter_dir / BEST_DIR, tuple(intermediate.new))
        setup.restored.append(restored)
    if wanted.start == "fresh":
        assert wanted.kind is not None
        name = target_adapter_name(experiment.target.name)
        setup.new = [AdapterSpec(name, wanted.kind, wanted.options)]
        setup.head_adapters, setup.trained = {head: name}, [name]
    elif wanted.start == "fusion":
        assert restored is not None and wanted.kind is not None
        names = [spec.name for spec in restored.adapters]
        if wanted.include_target:  # Pfeiffer et al. 2021 fuse the target's own adapter too
            assert own_adapter_dir is not None
            own = _own_target_adapter(experiment)
            setup.restored.append(Restored(own_adapter_dir / BEST_DIR, (own,)))
            names.append(own.name)
        setup.fusion = (names, wanted.kind, wanted.options)
        setup.train_fused_adapters = wanted.train_fused_adapters
        if wanted.train_fused_adapters:
            setup.trained = names
    else:  # continue, merge: the adapter of one intermediate task
        [spec] = [s for s in experiment.intermediate if s.name == wanted.from_task]
        name = task_adapter_name(spec.head_name)
        if wanted.start == "merge":
            setup.merge = name
        else:
            setup.head_adapters, setup.trained = {head: name}, [name]
    return _with_language_adapters(setup, experiment.config, language_dirs)


def _with_language_adapters(
    setup: AdapterSetup, config: ExperimentConfig, language_dirs: dict[str, Path]
) -> AdapterSetup:
    """MAD-X: every language adapter restored, the English one under the task's."""
    madx = config.language_adapters
    if madx is None:
        return setup
    restored = []
    for lang, phase_dir in language_dirs.items():
        name = language_adapter_name(lang)
        spec = AdapterSpec(name, madx.kind, madx.options)
        restored.append(Restored(phase_dir / BEST_DIR, (spec,)))
        setup.language_adapters[lang] = name
    setup.restored[:0] = restored
    setup.training_language = "en"
    return setup


def adapters_summary(config: ExperimentConfig) -> str:
    """The adapter setup in a few words, e.g. 'intermediate:seq_bn,target:fusion(dynamic)'
    or 'target:lora,madx:seq_bn_inv'; '' for full fine-tuning throughout."""
    parts = []
    inter = config.intermediate.adapters if config.intermediate is not None else None
    if inter is not None:
        parts.append(f"intermediate:{inter.kind}")
    target = config.target.adapters
    if target is not None:
        if target.start == "fresh":
            parts.append(f"target:{target.kind}")
        elif target.start == "fusion":
            without = "" if target.include_target else ",intermediate-only"
            parts.append(f"target:fusion({target.kind}{without})")
        else:
            parts.append(f"target:{target.start}({target.from_task})")
    if config.language_adapters is not None:
        parts.append(f"madx:{config.language_adapters.kind}")
    return ",".join(parts)
