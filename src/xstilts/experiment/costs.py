"""GPU-hour estimates for a grid's plan, from a per-task cost table.

An estimate, not a measurement: training costs 6 x N x T floating-point operations
(forward and backward) for N non-embedding encoder parameters and T tokens seen,
evaluation 2 x N x T. Tokens are counted as if every example filled the task's
maximum length (times its choices for multiple choice), so the estimate leans high
for short sentences; the GPU is taken as one A100 running bf16 at 30% of its 312
TFLOP/s peak, a usual utilisation for encoder fine-tuning. Sizes are English
training examples (REFERENCE sections 2 and 3: the datasets' own counts) and test
examples per language (approximate where datasets differ by language).
"""

from __future__ import annotations

from xstilts.config import TrainingConfig
from xstilts.experiment.resolve import ResolvedExperiment
from xstilts.formats import get_format

PEAK_FLOPS = 312e12
UTILISATION = 0.30
SECONDS_PER_HOUR = 3600.0

NON_EMBEDDING_PARAMETERS: dict[str, float] = {
    "xlm-roberta-large": 303e6,
    "FacebookAI/xlm-roberta-large": 303e6,
    "xlm-roberta-base": 86e6,
    "FacebookAI/xlm-roberta-base": 86e6,
    "bert-base-multilingual-cased": 86e6,
    "multilingual-e5-small": 21e6,
}
"""Encoder parameters outside the embedding matrix; unknown models count as XLM-R Large."""

TRAIN_EXAMPLES: dict[str, int] = {
    # intermediate tasks (English)
    "anli_plus": 1_104_934,
    "mnli": 392_702,
    "snli": 550_152,
    "anli_r1": 16_946,
    "anli_r2": 45_460,
    "anli_r3": 100_459,
    "qqp": 363_846,
    "squad": 87_599,
    "squad_v2": 130_319,
    # XTREME's translate-train: SQuAD v1.1 in ten languages, approximately (questions
    # whose answer could not be aligned after translation are lost)
    "squad_translate_train": 10 * 87_599,
    "hellaswag": 39_905,
    "ccg": 38_000,  # CCGbank sections 02-21, approximately
    "cosmosqa": 25_262,
    "commonsenseqa": 9_741,
    "sst2": 67_349,
    "siqa": 33_410,
    # targets (their English training data)
    "xnli": 392_702,
    "pawsx": 49_401,
    "udpos": 21_253,
    "panx": 20_000,
    "xquad": 87_599,
    "mlqa": 87_599,
    "tydiqa": 3_696,
    "xcopa": 400,
    "lareqa": 87_599,
}

TEST_EXAMPLES_PER_LANGUAGE: dict[str, int] = {
    "xnli": 5_010,
    "pawsx": 2_000,
    "udpos": 1_000,
    "panx": 5_000,
    "xquad": 1_190,
    "mlqa": 5_000,
    "tydiqa": 1_000,
    "bucc2018": 400_000,  # both sides of each language pair's test corpus
    "tatoeba": 2_000,  # 1,000 pairs
    "xcopa": 500,
    "lareqa": 2_400,
    "mewslix": 2_500,
}

CHOICES = {"hellaswag": 4, "cosmosqa": 4, "commonsenseqa": 5, "xcopa": 2, "siqa": 3}


def _flops_per_hour() -> float:
    return PEAK_FLOPS * UTILISATION * SECONDS_PER_HOUR


def _parameters(experiment: ResolvedExperiment) -> float:
    return NON_EMBEDDING_PARAMETERS.get(experiment.config.model.name, 303e6)


def _examples_seen(
    name: str,
    training: TrainingConfig,
    batch_size: int,
    share: float = 1.0,
) -> float | None:
    """Examples one task of a phase trains on: ``share`` of the phase's ``max_steps``
    batches (``batch_size`` is examples per optimizer step) when a step budget is set
    (a capped set is repeated as often as the budget needs), else its epochs over the
    (capped) training set; None if its size is unknown."""
    if training.max_steps is not None:
        return training.max_steps * share * batch_size
    size = TRAIN_EXAMPLES.get(name)
    if size is None:
        return None
    assert training.epochs is not None
    cap = training.max_train_examples
    return (min(size, cap) if cap is not None else size) * training.epochs


def _tokens(name: str, examples: float | None, max_length: int) -> float | None:
    if examples is None:
        return None
    return examples * max_length * CHOICES.get(name, 1)


def _step_shares(names: list[str], cap: int | None) -> dict[str, float] | None:
    """Each task's share of a multi-task phase's steps, proportional to its (capped)
    size as the default sampler draws; None if a size is unknown."""
    if any(name not in TRAIN_EXAMPLES for name in names):
        return None
    sizes = {name: min(TRAIN_EXAMPLES[name], cap or TRAIN_EXAMPLES[name]) for name in names}
    total = sum(sizes.values())
    return {name: size / total for name, size in sizes.items()}


def intermediate_gpu_hours(experiment: ResolvedExperiment) -> float | None:
    """One intermediate run (all its tasks); None if a task's size is unknown."""
    inter = experiment.config.intermediate
    if inter is None:
        return 0.0
    training = inter.training
    names = [spec.name for spec in experiment.intermediate]
    shares: dict[str, float] | None = {name: 1.0 for name in names}
    if training.max_steps is not None and len(names) > 1:
        shares = _step_shares(names, training.max_train_examples)
    if shares is None:
        return None
    tokens = 0.0
    for spec in experiment.intermediate:
        settings = inter.task_settings[spec.name]
        assert settings.max_length is not None and settings.batch_size is not None
        seen = _examples_seen(spec.name, training, settings.batch_size, shares[spec.name])
        count = _tokens(spec.name, seen, settings.max_length)
        if count is None:
            return None
        tokens += count
    return 6 * _parameters(experiment) * tokens / _flops_per_hour()


def _phase_tokens(name: str, training: TrainingConfig) -> float | None:
    """Training tokens of a single-task phase (a target or one of its stages)."""
    assert training.max_length is not None and training.batch_size is not None
    seen = _examples_seen(name, training, training.batch_size)
    return _tokens(name, seen, training.max_length)


def target_gpu_hours(experiment: ResolvedExperiment) -> float | None:
    """One target run: its stages, training (if the task trains) and evaluation in
    every language."""
    spec, training = experiment.target, experiment.config.target.training
    assert training.max_length is not None
    flops = 0.0
    for stage, stage_spec in zip(experiment.config.target.stages, experiment.stages, strict=True):
        tokens = _phase_tokens(stage_spec.name, stage.training)
        if tokens is None:
            return None
        flops += 6 * _parameters(experiment) * tokens
    if get_format(spec.format).trainable:
        tokens = _phase_tokens(spec.name, training)
        if tokens is None:
            return None
        flops += 6 * _parameters(experiment) * tokens
    per_language = TEST_EXAMPLES_PER_LANGUAGE.get(spec.name)
    if per_language is None:
        return None
    eval_tokens = per_language * len(experiment.languages) * training.max_length
    flops += 2 * _parameters(experiment) * eval_tokens * CHOICES.get(spec.name, 1)
    return flops / _flops_per_hour()


def language_adapter_gpu_hours(experiment: ResolvedExperiment) -> float | None:
    """One MAD-X language adapter's training run: its step budget of masked language
    modelling (the encoder's forward and backward pass dominate, though only the adapter
    trains); None without max_steps (the size of a language's text is not known here)."""
    madx = experiment.config.language_adapters
    if madx is None or madx.training.max_steps is None:
        return None
    training = madx.training
    assert training.max_length is not None and training.batch_size is not None
    seen = training.max_steps * training.batch_size  # examples per optimizer step
    return 6 * _parameters(experiment) * seen * training.max_length / _flops_per_hour()
