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


def _training_tokens(name: str, epochs: float, max_length: int, cap: int | None) -> float | None:
    size = TRAIN_EXAMPLES.get(name)
    if size is None:
        return None
    examples = min(size, cap) if cap is not None else size
    return examples * epochs * max_length * CHOICES.get(name, 1)


def intermediate_gpu_hours(experiment: ResolvedExperiment) -> float | None:
    """One intermediate run (all its tasks); None if a task's size is unknown."""
    inter = experiment.config.intermediate
    if inter is None:
        return 0.0
    tokens = 0.0
    for spec in experiment.intermediate:
        settings = inter.task_settings[spec.name]
        assert settings.max_length is not None and inter.training.epochs is not None
        count = _training_tokens(
            spec.name, inter.training.epochs, settings.max_length, inter.training.max_train_examples
        )
        if count is None:
            return None
        tokens += count
    return 6 * _parameters(experiment) * tokens / _flops_per_hour()


def target_gpu_hours(experiment: ResolvedExperiment) -> float | None:
    """One target run: its stages, training (if the task trains) and evaluation in
    every language."""
    spec, training = experiment.target, experiment.config.target.training
    assert training.max_length is not None and training.epochs is not None
    flops = 0.0
    for stage, stage_spec in zip(experiment.config.target.stages, experiment.stages, strict=True):
        assert stage.training.max_length is not None and stage.training.epochs is not None
        tokens = _training_tokens(
            stage_spec.name,
            stage.training.epochs,
            stage.training.max_length,
            stage.training.max_train_examples,
        )
        if tokens is None:
            return None
        flops += 6 * _parameters(experiment) * tokens
    if get_format(spec.format).trainable:
        tokens = _training_tokens(
            spec.name, training.epochs, training.max_length, training.max_train_examples
        )
        if tokens is None:
            return None
        flops += 6 * _parameters(experiment) * tokens
    per_language = TEST_EXAMPLES_PER_LANGUAGE.get(spec.name)
    if per_language is None:
        return None
    eval_tokens = per_language * len(experiment.languages) * training.max_length
    flops += 2 * _parameters(experiment) * eval_tokens * CHOICES.get(spec.name, 1)
    return flops / _flops_per_hour()
