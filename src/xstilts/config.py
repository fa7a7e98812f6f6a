"""Typed experiment configuration: YAML in, validated before any work starts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from xstilts.errors import XstiltsError
from xstilts.io import read_utf8


def _one_or_list(schema: dict[str, Any]) -> None:
    """JSON Schema of a list field whose validator also takes a single item alone."""
    as_list = {key: schema.pop(key) for key in ("type", "items", "minItems") if key in schema}
    schema["anyOf"] = [dict(as_list.get("items") or {}), as_list]


class StrictModel(BaseModel):
    # allow_inf_nan=False: a learning rate of .inf would otherwise train to NaN quietly.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TinyModelConfig(StrictModel):
    """A small randomly initialised XLM-R-shaped encoder, for tests and the demo."""

    hidden_size: int = Field(32, gt=0, description="Width of the hidden states.")
    num_layers: int = Field(2, gt=0, description="Transformer layers.")
    num_heads: int = Field(2, gt=0, description="Attention heads per layer.")
    intermediate_size: int = Field(64, gt=0, description="Width of the feed-forward layers.")
    max_positions: int = Field(514, gt=8, description="Position embeddings (XLM-R's 514).")
    init_seed: int = Field(0, description="Seed of the 'pretrained' weights, shared by all runs.")
    tokenizer: Path | None = Field(None, description="tokenizer.json; the shipped one if unset.")


class ModelConfig(StrictModel):
    name: str = Field(
        "xlm-roberta-large",
        description="Hub id, local path, or an embedded model (xstilts models list).",
    )
    revision: str | None = Field(
        None, description="Hub revision of the model (branch, tag or commit); unset: the latest."
    )
    tiny: TinyModelConfig | None = Field(None, description="Build a tiny encoder instead.")
    freeze_embeddings: bool = Field(
        False,
        description="Keep the embedding layer fixed in every phase (96M of "
        "multilingual-e5-small's 118M parameters): less optimizer memory and time, and "
        "the shared multilingual vocabulary stays aligned.",
    )
    freeze_layers: int = Field(0, ge=0, description="Keep the lowest N encoder layers fixed.")

    @property
    def display_name(self) -> str:
        if self.tiny is None:
            return self.name
        return f"tiny-xlmr-h{self.tiny.hidden_size}-l{self.tiny.num_layers}"


# Each method's options and their defaults: the values of its paper (or, where the paper
# leaves a choice open, its reference code). README "Adversarial training" has the table.
ADVERSARIAL_OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "fgm": {"epsilon": 1.0, "precision": "float32"},
    "pgd": {"epsilon": 1.0, "step_size": 0.3, "steps": 3, "norm": "l2", "precision": "float32"},
    "freelb": {
        "steps": 3,
        "step_size": 0.1,
        "init_magnitude": 0.1,
        "epsilon": 0.0,
        "norm": "l2",
        "dropout": "fixed",
        "precision": "float32",
    },
    "smart": {
        "lambda": 1.0,
        "sigma": 1e-5,
        "epsilon": 1e-5,
        "step_size": 1e-3,
        "steps": 1,
        "normalise": "token",
        "mu": 1.0,
        "beta": 0.999,
        "beta_early": 0.99,
        "beta_early_fraction": 0.1,
        "precision": "float32",
    },
    "r3f": {"lambda": 1.0, "sigma": 1e-5, "noise": "normal", "precision": "float32"},
}


class AdversarialConfig(StrictModel):
    """Adversarial (or noise) training in the space of the input embeddings.

    fgm (Miyato et al. 2017), pgd (Madry et al. 2018), freelb (Zhu et al. 2020),
    smart (Jiang et al. 2020, with its Bregman proximal point term unless mu is 0) and
    r3f (Aghajanyan et al. 2021); 'none' is standard training (to switch one task of a
    multi-task phase off). Options a method does not have are an error; unset ones take
    the method's defaults (ADVERSARIAL_OPTIONS), written into the resolved config.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    method: Literal["none", "fgm", "pgd", "freelb", "smart", "r3f"] = Field(
        description="The method; its options below take its paper's defaults when unset."
    )
    epsilon: float | None = Field(
        None,
        ge=0,
        description="Radius of the perturbation ball (FreeLB, SMART: 0 = no projection).",
    )
    step_size: float | None = Field(None, gt=0, description="Ascent step size.")
    steps: int | None = Field(None, gt=0, description="Ascent steps (FreeLB: forward passes).")
    norm: Literal["l2", "linf"] | None = Field(
        None, description="PGD, FreeLB: the norm of the perturbation ball."
    )
    init_magnitude: float | None = Field(None, ge=0, description="FreeLB: random start size.")
    dropout: Literal["fixed", "resample"] | None = Field(
        None,
        description="FreeLB: one dropout mask for all of a step's passes (fixed, the paper) "
        "or a new one each pass (resample).",
    )
    weight: float | None = Field(None, alias="lambda", ge=0, description="Regulariser weight.")
    sigma: float | None = Field(None, gt=0, description="Noise scale (SMART, R3F).")
    noise: Literal["normal", "uniform"] | None = Field(
        None, description="R3F: the distribution of the noise."
    )
    normalise: Literal["token", "example"] | None = Field(
        None,
        description="SMART: the ascent direction over its L-inf norm per token (the "
        "reference code) or per example.",
    )
    mu: float | None = Field(None, ge=0, description="SMART: proximal point weight (0: off).")
    beta: float | None = Field(
        None, ge=0, lt=1, description="SMART: teacher momentum after the early updates."
    )
    beta_early: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="SMART: teacher momentum for the first beta_early_fraction of updates "
        "(unset: 0.99, or beta itself when beta is set: a constant momentum).",
    )
    beta_early_fraction: float | None = Field(
        None, ge=0, le=1, description="SMART: share of the updates that use beta_early."
    )
    precision: Literal["float32", "autocast"] | None = Field(
        None,
        description="float32: the method's forward passes, perturbations and divergences "
        "in float32 whatever the run's mixed precision, so the configured sizes are the "
        "applied ones; autocast: its passes follow the run's mixed precision (faster; a "
        "perturbation below bf16 / fp16 resolution of the activations is lost).",
    )

    @model_validator(mode="after")
    def _options_of_the_method(self) -> AdversarialConfig:
        allowed = ADVERSARIAL_OPTIONS[self.method]
        given = {_option_name(name) for name in self.model_fields_set} - {"method"}
        unknown = sorted(given - set(allowed))
        if unknown:
            names = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"{', '.join(unknown)} is not an option of method '{self.method}' "
                f"(its options: {names})"
            )
        if self.method == "smart" and self.beta is not None and self.beta_early is None:
            object.__setattr__(self, "beta_early", self.beta)  # beta alone: constant
        for name, default in allowed.items():
            field_name = "weight" if name == "lambda" else name
            if getattr(self, field_name) is None:
                object.__setattr__(self, field_name, default)
        return self

    @model_serializer(mode="wrap")
    def _only_the_method_options(self, handler: Any) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}

    def options(self) -> dict[str, Any]:
        """The method's options, resolved."""
        values = self.model_dump(by_alias=True)
        return {name: values[name] for name in ADVERSARIAL_OPTIONS[self.method]}


def _option_name(field_name: str) -> str:
    return "lambda" if field_name == "weight" else field_name


class TrainingConfig(StrictModel):
    """One training phase. Unset values take the task's defaults when resolved."""

    learning_rate: float = Field(
        1e-5, gt=0, description="Peak learning rate of AdamW (linear warmup, then linear decay)."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay (not on biases and layer norms)."
    )
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the optimizer steps that warm the rate up."
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="Warmup in optimizer steps; overrides warmup_fraction when set."
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; null: no clipping."
    )
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Examples per optimizer step, whatever the number of processes: each "
        "runs batch_size / (processes x gradient_accumulation_steps) at a time.",
    )
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="Micro-batches per optimizer step (a memory knob)."
    )
    epochs: float | None = Field(
        None, gt=0, description="Passes over the training data; unset: the task's (profile, spec)."
    )
    max_steps: int | None = Field(None, gt=0, description="Overrides epochs when set.")
    max_length: int | None = Field(
        None, gt=8, description="Longest input in tokens; unset: the task's (profile, spec)."
    )
    eval_every_steps: int | None = Field(None, gt=0, description="Unset: once per epoch.")
    checkpoint_every_steps: int | None = Field(None, gt=0, description="Unset: at each eval.")
    early_stopping_patience: int | None = Field(None, gt=0, description="In evaluations.")
    max_train_examples: int | None = Field(
        None, gt=0, description="Train on a random subset of this many examples per task."
    )
    max_eval_examples: int | None = Field(
        None, gt=0, description="Validation examples read per task to select the checkpoint."
    )
    eval_batch_size: int = Field(64, gt=0, description="Examples per forward pass in validation.")
    adversarial: AdversarialConfig | None = Field(
        None,
        description="Adversarial training of this phase (every task, unless its "
        "task_settings say otherwise).",
    )
    nonfinite_loss: Literal["error", "skip"] = Field(
        "error",
        description="A step whose loss or gradient norm is inf or NaN: stop the run with "
        "an error, or skip the step (no update) and go on, as some prefer with fp16.",
    )
    group_by_length: bool = Field(
        True,
        description="Batch training examples of similar length together (shuffled "
        "mega-batches sorted by length, as the Trainer's group_by_length), so batches "
        "pad less; false: batches drawn at random.",
    )


class SamplerConfig(StrictModel):
    """How often each optimizer step draws each task of a multi-task phase."""

    strategy: Literal["proportional", "uniform", "capped", "temperature", "weights"] = Field(
        "proportional",
        description="proportional to training-set size (the paper), uniform, proportional "
        "with sizes capped at 'cap', p ~ n^(1/temperature), or explicit 'weights'.",
    )
    cap: int | None = Field(None, gt=0, description="capped: the largest size counted.")
    temperature: float = Field(1.0, gt=0, description="temperature: p ~ n^(1/temperature).")
    weights: dict[str, float] = Field(
        default_factory=dict, description="weights: task name -> its weight."
    )


class AdapterConfig(StrictModel):
    """Adapters of an intermediate phase: one per task (per head-sharing group), from
    AdapterHub's ``adapters`` library, over the shared encoder."""

    kind: str = Field(
        "seq_bn",
        description="An adapter config the adapters library ships: seq_bn, double_seq_bn, "
        "lora, prefix_tuning, ia3, seq_bn_inv, par_bn, ... (checked before any work).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="That config's own options, e.g. reduction_factor (bottleneck), r and "
        "alpha (LoRA), prefix_length (prefix tuning).",
    )
    train: Literal["adapters", "adapters_and_encoder"] = Field(
        "adapters", description="Train the adapters over a frozen encoder, or both."
    )
    also_train: list[Literal["layer_norms", "embeddings"]] = Field(
        default_factory=list,
        description="Encoder parts that train beside the adapters (heads always train).",
    )


class TargetAdapterConfig(AdapterConfig):
    """How the target phase uses adapters: a fresh adapter (kind: an adapter config),
    one intermediate task adapter trained further ('continue'), AdapterFusion over the
    intermediate task adapters and, as in Pfeiffer et al. 2021, the target task's own
    adapter ('fusion'; kind: dynamic or static), or full fine-tuning of the encoder
    with one intermediate LoRA / IA3 adapter merged into it ('merge')."""

    kind: str | None = Field(
        None,
        description="fresh: an adapter config (default seq_bn); fusion: dynamic "
        "(default) or static; continue, merge: unset (the intermediate adapter's).",
    )
    start: Literal["fresh", "continue", "fusion", "merge"] = Field(
        "fresh",
        description="fresh: a new adapter; continue: one intermediate adapter trained "
        "further; fusion: AdapterFusion; merge: one intermediate LoRA / IA3 adapter merged "
        "into the encoder, which is then fine-tuned.",
    )
    from_task: str | None = Field(
        None, description="continue, merge: the intermediate task whose adapter is used."
    )
    train_fused_adapters: bool = Field(
        False, description="fusion: train the fused task adapters too (AdapterHub's unfreeze)."
    )
    include_target: bool | None = Field(
        None,
        description="fusion: fuse the target task's own adapter with the intermediate ones "
        "(true, the default, as Pfeiffer et al. 2021: it is trained first, alone on the "
        "target task, with the intermediate adapters' kind and options) or only the "
        "intermediate ones (false).",
    )

    @model_validator(mode="after")
    def _kind_fits_the_start(self) -> TargetAdapterConfig:
        if self.start in ("continue", "merge") and self.kind is not None:
            raise ValueError(
                f"kind is not used with start '{self.start}' (the intermediate task "
                "adapter keeps its own kind); remove it"
            )
        if self.start == "merge" and (self.options or self.also_train):
            raise ValueError(
                "start 'merge' fine-tunes the whole encoder: options and also_train do not apply"
            )
        if self.start != "fusion" and self.train_fused_adapters:
            raise ValueError("train_fused_adapters applies to start 'fusion' only")
        if self.start != "fusion" and self.include_target is not None:
            raise ValueError("include_target applies to start 'fusion' only")
        if self.start == "fusion" and self.include_target is None:
            object.__setattr__(self, "include_target", True)
        if self.kind is None and self.start in ("fresh", "fusion"):
            default = "seq_bn" if self.start == "fresh" else "dynamic"
            object.__setattr__(self, "kind", default)
        return self

    @model_serializer(mode="wrap")
    def _include_target_with_fusion_only(self, handler: Any) -> dict[str, Any]:
        """Other starts do not write the key: their resolved configs (and run ids) stay."""
        values = handler(self)
        if values.get("include_target") is None:
            values.pop("include_target", None)
        return values


def _check_from_task(target: TargetAdapterConfig, tasks: list[str]) -> None:
    if target.start == "fusion":
        if target.from_task is not None:
            raise ValueError("target.adapters.from_task: fusion uses every intermediate adapter")
        if len(tasks) + bool(target.include_target) < 2:
            raise ValueError(
                "target.adapters.start 'fusion' fuses two or more adapters: without "
                "include_target, those of two or more intermediate tasks; "
                f"intermediate.tasks has {len(tasks)}"
            )
        return
    if target.from_task is None and len(tasks) > 1:
        raise ValueError(
            f"target.adapters.from_task: name the intermediate task whose adapter to "
            f"{target.start} ({', '.join(tasks)})"
        )
    if target.from_task is not None and target.from_task not in tasks:
        raise ValueError(
            f"target.adapters.from_task '{target.from_task}' is not among "
            f"intermediate.tasks ({', '.join(tasks)})"
        )
    if target.from_task is None:
        object.__setattr__(target, "from_task", tasks[0])


MADX_LEARNING_RATE = 1e-4
"""Pfeiffer et al. 2020 (MAD-X) train language adapters at 1e-4."""


class LanguageAdaptersConfig(StrictModel):
    """MAD-X (Pfeiffer et al. 2020): a language adapter per language, trained with masked
    language modelling on that language's text; task adapters stack on the English one,
    and zero-shot evaluation swaps in the target language's."""

    task: str = Field(description="An 'mlm' task whose splits hold each language's text.")
    languages: list[str] | None = Field(
        None, description="Languages to train adapters for; unset: every language of the task."
    )
    kind: str = Field("seq_bn_inv", description="seq_bn_inv: bottleneck + invertible adapter.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="That adapter config's own options."
    )
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(learning_rate=MADX_LEARNING_RATE),
        description=f"Unset learning_rate: {MADX_LEARNING_RATE:g}, as MAD-X.",
    )
    seed: int = Field(0, description="One set of language adapters serves every run's seed.")
    fallback: Literal["en", "none"] = Field(
        "en",
        description="An evaluation language without an adapter: English's adapter, or none.",
    )

    @field_validator("training", mode="after")
    @classmethod
    def _madx_learning_rate(cls, training: TrainingConfig) -> TrainingConfig:
        """Language adapters train at MAD-X's learning rate unless one is given."""
        if "learning_rate" in training.model_fields_set:
            return training
        madx = training.model_copy(update={"learning_rate": MADX_LEARNING_RATE})
        madx.model_fields_set.discard("learning_rate")  # a default, not the user's value
        return madx


class TaskSettings(StrictModel):
    """Per-task settings of a multi-task phase; unset values come from the task spec."""

    batch_size: int | None = Field(None, gt=0, description="Examples per optimizer step.")
    max_length: int | None = Field(None, gt=8, description="Longest input in tokens.")
    gradient_accumulation_steps: int | None = Field(
        None, gt=0, description="Micro-batches per optimizer step."
    )
    adversarial: AdversarialConfig | None = Field(
        None, description="This task's adversarial training ({method: none} for none)."
    )


class IntermediateConfig(StrictModel):
    tasks: list[str] = Field(
        min_length=1,
        description="The English task, or tasks trained together (multi-task).",
        json_schema_extra=_one_or_list,
    )
    sampler: SamplerConfig = Field(
        default_factory=SamplerConfig, description="Multi-task: how steps draw the tasks."
    )
    task_settings: dict[str, TaskSettings] = Field(
        default_factory=dict, description="Multi-task: task name -> its own settings."
    )
    validation_weights: dict[str, float] | None = Field(
        None, description="Combine the tasks' validation scores by these weights; mean if unset."
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="The phase's training."
    )
    adapters: AdapterConfig | None = Field(
        None, description="Train an adapter per task instead of (or with) the encoder."
    )

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_are_tasks(self) -> IntermediateConfig:
        keyed = {
            "task_settings": self.task_settings,
            "sampler.weights": self.sampler.weights,
            "validation_weights": self.validation_weights or {},
        }
        for key, mapping in keyed.items():
            unknown = sorted(set(mapping) - set(self.tasks))
            if unknown:
                raise ValueError(
                    f"{key} names {', '.join(unknown)}, not among intermediate.tasks "
                    f"({', '.join(self.tasks)})"
                )
        weights = list((self.validation_weights or {}).values()) + list(
            self.sampler.weights.values()
        )
        if any(w < 0 for w in weights):
            raise ValueError("sampler.weights and validation_weights must not be negative")
        if self.validation_weights and not sum(self.validation_weights.values()) > 0:
            raise ValueError("validation_weights must not all be zero")
        if self.sampler.strategy == "capped" and self.sampler.cap is None:
            raise ValueError("sampler.strategy 'capped' needs sampler.cap")
        if self.sampler.strategy == "weights":
            missing = [t for t in self.tasks if t not in self.sampler.weights]
            if missing:
                raise ValueError(f"sampler.weights gives no weight for {', '.join(missing)}")
        return self


class TargetStage(StrictModel):
    """An English fine-tuning stage between the intermediate phase and the target task
    (XTREME-R's two-stage protocols: XCOPA trains on SIQA, then COPA; Tatoeba retrieves
    with the encoder fine-tuned on SQuAD)."""

    task: str = Field(description="The stage's English task.")
    training: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="This stage's training; without an 'adversarial' of its own it takes "
        "target.training's, so adversarial target training covers the stages too "
        "({method: none} opts a stage out).",
    )
    carry_head: bool = Field(
        False,
        description="Start the next stage's (or the target's) head from this stage's, as "
        "XTREME's run_xcopa.py starts COPA from the SIQA model; the formats must match.",
    )


class TargetConfig(StrictModel):
    task: str = Field(description="The target task (xstilts tasks lists them).")
    training: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="Its English training; unset values: the task profile's, else the "
        "task's own (xstilts tasks show TASK).",
    )
    stages: list[TargetStage] = Field(
        default_factory=list,
        description="Fine-tuning stages run in order before the target task (each trains "
        "the whole encoder on its task's English data; see TargetStage).",
    )
    adapters: TargetAdapterConfig | None = Field(
        None, description="Train the target task through adapters (see TargetAdapterConfig)."
    )


class EvaluationConfig(StrictModel):
    languages: list[str] | None = Field(
        None,
        description="Unset: the benchmark's languages of the task if 'benchmark' is set, "
        "else every language of the task; set: a subset of those.",
    )
    benchmark: Literal["xtreme", "xtreme-r"] | None = Field(
        None,
        description="Evaluate exactly this benchmark's languages of the target task "
        "(XTREME: 40 languages over 9 tasks; XTREME-R: 50 over 10), so that averages are "
        "the benchmark's; a target of other benchmarks only is an error. A target of no "
        "benchmark (the CPU-scale stand-ins, your own tasks) evaluates its own "
        "languages, and results.json says so (languages_from: task). Unset: every "
        "language of the task, with each benchmark's average beside the overall one.",
    )
    split: Literal["test", "validation"] = Field("test", description="The split evaluated.")
    batch_size: int = Field(64, gt=0, description="Examples per forward pass.")
    max_examples: int | None = Field(None, gt=0, description="Per language, for quick checks.")


class DataConfig(StrictModel):
    source: Literal["hub", "local", "samples"] = Field(
        "hub",
        description="hub: Hugging Face datasets; local: files under data_dir; samples: the "
        "real samples shipped with xstilts and the stand-in tasks cut from them "
        "(xquad_sentences, xquad_qnli, xquad_qnli_multilingual, ud_pos, tatoeba, "
        "tatoeba_text), for CPU-scale runs.",
    )
    data_dir: Path | None = Field(None, description="Folder of local copies of the task files.")
    cache_dir: Path | None = Field(None, description="Feature cache; default ~/.cache/xstilts.")
    task_files: list[Path] = Field(default_factory=list, description="User task spec YAMLs.")
    subsample_seed: int | Literal["seed"] = Field(
        0,
        description="Seed of the random subsets that max_train_examples draws; 'seed': the "
        "run's own seed, so each seed of a grid trains on a different subset (a learning "
        "curve then shows the variance of the subset, not one lucky draw).",
    )

    def subsample_seed_for(self, seed: int) -> int:
        """The seed of this run's ``max_train_examples`` subsets."""
        return seed if self.subsample_seed == "seed" else self.subsample_seed


# Accelerate's built-in trackers (accelerate.tracking.LOGGER_TYPE_TO_CLASS).
TRACKERS = (
    "tensorboard",
    "wandb",
    "mlflow",
    "aim",
    "comet_ml",
    "clearml",
    "dvclive",
    "swanlab",
    "trackio",
)


def _trackers_schema(schema: dict[str, Any]) -> None:
    schema["items"] = {"enum": list(TRACKERS), "type": "string"}
    _one_or_list(schema)


class RuntimeConfig(StrictModel):
    """How the work runs; shared by all phases of an experiment."""

    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Mixed precision of training and evaluation (through Accelerate)."
    )
    cpu: bool = Field(False, description="Force the CPU even where a GPU is present.")
    compile: bool = Field(
        False,
        description="Compile the encoder with torch.compile (dynamic shapes): faster "
        "steps on a GPU after a slow first one; rarely worth it on a CPU.",
    )
    log_with: list[str] = Field(
        default_factory=list,
        json_schema_extra=_trackers_schema,
        description="Experiment trackers, through Accelerate: any of "
        + ", ".join(TRACKERS)
        + ". Each phase logs its config, training loss, learning rate, validation "
        "scores and (target runs) the final per-language scores; files go under the "
        "run's folder (trackers/).",
    )
    project: str | None = Field(
        None,
        description="The trackers' project (W&B project, MLflow experiment, TensorBoard "
        "folder); unset: the grid's name, else 'xstilts'.",
    )
    keep: Literal["all", "best", "results"] = Field(
        "results",
        description="What a finished phase keeps on disk. results: the best model of the "
        "phases others start from (intermediate, language adapter, target stage) and a "
        "target run's predictions and scores; best: also the target's best model (to "
        "evaluate more languages later); all: also every phase's last checkpoint "
        "(optimizer state). Changes no run id.",
    )

    @field_validator("log_with", mode="before")
    @classmethod
    def _known_trackers(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list):
            return value  # pydantic reports the wrong type
        unknown = [name for name in names if name not in TRACKERS]
        if unknown:
            raise ValueError(
                f"unknown tracker {unknown[0]!r}; expected a list of: {', '.join(TRACKERS)}"
            )
        return list(dict.fromkeys(names))


class ExperimentConfig(StrictModel):
    name: str | None = Field(
        None, description="A label of the experiment, kept in its config.yaml; no part of its id."
    )
    grid_option: str | None = Field(
        None, description="Set by grids: the label of this run's intermediate option."
    )
    grid_name: str | None = Field(
        None, description="Set by grids: the grid's name (groups its runs in trackers)."
    )
    seed: int = Field(42, description="Seed of the run (initialisation, data order).")
    profile: Literal["xstilts", "xtreme"] = Field(
        "xstilts",
        description="Default fine-tuning settings of the target task: the X-STILTs paper's "
        "(jiant) or XTREME's scripts' (xstilts tasks show TASK lists both).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The encoder.")
    intermediate: IntermediateConfig | None = Field(
        None, description="English intermediate-task training first; unset: none (a baseline)."
    )
    target: TargetConfig = Field(
        description="The target task: trained in English, evaluated in every language."
    )
    language_adapters: LanguageAdaptersConfig | None = Field(
        None, description="MAD-X language adapters; unset: none."
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="What the target task is evaluated on."
    )
    data: DataConfig = Field(default_factory=DataConfig, description="Where the data comes from.")
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="How the work runs (shared by all phases)."
    )

    def to_yaml(self, *, only_set: bool = False) -> str:
        """The config as YAML; ``only_set``: only the keys given, so that reading it back
        leaves the same keys unset (task profiles and defaults fill those)."""
        payload = self.model_dump(mode="json", exclude_unset=only_set)
        return yaml.safe_dump(payload, sort_keys=False)

    @model_validator(mode="after")
    def _adapter_phases_fit(self) -> ExperimentConfig:
        inter = self.intermediate.adapters if self.intermediate is not None else None
        target = self.target.adapters
        if inter is not None and target is None:
            raise ValueError(
                "intermediate.adapters is set: set target.adapters too, to say how the "
                "target phase uses them (start: fresh, continue, fusion or merge)"
            )
        if target is not None and target.start != "fresh":
            if inter is None:
                raise ValueError(
                    f"target.adapters.start '{target.start}' needs intermediate.adapters"
                )
            _check_from_task(target, self.intermediate.tasks)  # type: ignore[union-attr]
        for key, adapter in (("intermediate.adapters", inter), ("target.adapters", target)):
            if (
                adapter is not None
                and "embeddings" in adapter.also_train
                and self.model.freeze_embeddings
            ):
                raise ValueError(
                    f"{key}.also_train lists embeddings, but model.freeze_embeddings keeps "
                    "them fixed; drop one of the two"
                )
        if self.language_adapters is not None:
            if target is None or target.start == "merge":
                raise ValueError(
                    "language_adapters (MAD-X) stack a task adapter on the English language "
                    "adapter: set target.adapters with start fresh, continue or fusion"
                )
            languages = self.language_adapters.languages
            if languages is not None and "en" not in languages:
                raise ValueError(
                    "language_adapters.languages must include en: task adapters are "
                    "trained on the English one"
                )
        return self


# Keys that change where things are stored, not what is computed.
NON_SEMANTIC_KEYS = {("data", "cache_dir"), ("name",), ("grid_option",), ("grid_name",)}
# Where progress is reported, not what is computed; their section goes too when they
# were all it held, so turning trackers on keeps a run's id.
REPORTING_KEYS = {("runtime", "log_with"), ("runtime", "project")}
# What is kept on disk afterwards, not what is computed.
RETENTION_KEYS = {("runtime", "keep")}


def config_hash(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def semantic_dump(config: ExperimentConfig) -> dict[str, Any]:
    """What a run's id is computed from: the values that differ from the defaults, so
    that a key added to a later xstilts (with a default) leaves existing run ids alone."""
    payload = config.model_dump(mode="json", exclude_defaults=True)
    for path in NON_SEMANTIC_KEYS:
        node = payload
        for key in path[:-1]:
            node = node.get(key) or {}
        node.pop(path[-1], None)
    runtime = payload.get("runtime")
    if runtime and any(key in runtime for _, key in REPORTING_KEYS | RETENTION_KEYS):
        for _, key in REPORTING_KEYS | RETENTION_KEYS:
            runtime.pop(key, None)
        if not runtime:
            del payload["runtime"]
    return payload


# ---------------------------------------------------------------------------
# Loading, overrides and error messages


def load_config(path: Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, validate."""
    payload = read_config_payload(path)
    for item in overrides:
        apply_override(payload, item)
    return parse_config(payload, source=str(path))


def read_config_payload(path: Path) -> dict[str, Any]:
    """The mapping of a YAML config file, or one clear error."""
    if not path.is_file():
        raise XstiltsError(f"config file not found: {path}")
    try:
        payload = yaml.safe_load(read_utf8(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise XstiltsError(f"{path}{line}: not valid YAML") from None
    if not isinstance(payload, dict):
        raise XstiltsError(f"{path}: the config must be a mapping of keys to values")
    return payload


def parse_config(payload: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(payload)
    except ValidationError as err:
        raise XstiltsError(f"{source}: {describe_validation_error(err)}") from None


def apply_override(payload: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict; the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise XstiltsError(f"--set {item!r}: expected key=value, e.g. target.training.epochs=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    set_key(payload, key.strip(), value, f"--set {item!r}")


def set_key(payload: dict[str, Any], key: str, value: Any, label: str) -> None:
    """Set the dotted ``key`` of a nested dict to ``value``, making sections as needed;
    ``label`` names the override in errors."""
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise XstiltsError(f"{label}: expected a dotted key, e.g. target.training.epochs")
    node = payload
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise XstiltsError(f"{label}: '{part}' holds a value, not a section of keys")
        node = child
    node[parts[-1]] = value


def describe_validation_error(err: ValidationError) -> str:
    """One sentence for the first problem: the key, the value and what is allowed."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(ExperimentConfig, loc[:-1])
        return f"unknown key '{key}'; allowed keys here: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"missing required key '{key}'"
    if first["type"] == "value_error":
        message = first["msg"].removeprefix("Value error, ")
        return f"key '{key}': {message}" if loc else message
    value = first.get("input")
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    return f"key '{key}' has value {shown}: {first['msg']}"


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            break
        current = _model_in(field.annotation)
        if current is None:
            return []
    return sorted(current.model_fields) if hasattr(current, "model_fields") else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
