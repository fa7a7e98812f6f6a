"""The training loop: one loop for single-task and multi-task training, on Accelerate.

Read it top to bottom: build the optimizer and schedule, restore the last
checkpoint if there is one, then repeat {pick a task, accumulate its batches,
step} with periodic validation, best-model saving, early stopping and
checkpoints.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, set_seed
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from xstilts.config import TrainingConfig
from xstilts.errors import XstiltsError
from xstilts.features import feature_lengths
from xstilts.formats import TaskFormat
from xstilts.inference import Sharding, accelerator_sharding, run_sharded
from xstilts.io import atomic_write_json
from xstilts.metrics import get_metric
from xstilts.modeling import MultiTaskModel, save_model
from xstilts.progress import progress_bar
from xstilts.tasks.spec import TaskSpec
from xstilts.tracking import training_values, validation_values
from xstilts.train.adversarial import (
    EmbeddingPerturbation,
    MicroBatch,
    Objective,
    step_generator,
)
from xstilts.train.batches import BatchStream, StreamPosition
from xstilts.train.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_objective_states,
    save_checkpoint,
)
from xstilts.train.sampling import TaskSampler

log = logging.getLogger(__name__)

BEST_DIR = "best"
LAST_CHECKPOINT = Path("checkpoints") / "last"
RESULT_FILE = "training.json"


@dataclass
class TrainTask:
    """One task of a training phase, with its features ready."""

    spec: TaskSpec
    fmt: TaskFormat
    train_features: datasets.Dataset
    validation_examples: datasets.Dataset
    validation_features: datasets.Dataset
    batch_size: int
    """Examples per optimizer step, all processes and micro-batches together."""
    accumulation: int = 1
    """Micro-batches per optimizer step when this task is drawn (a memory knob: each
    process runs ``batch_size / (processes x accumulation)`` examples at a time)."""
    weight: float = 1.0
    """Sampling weight."""
    validation_weight: float = 1.0
    """Weight of its validation score in the combined score."""
    objective: Objective = field(default_factory=Objective)
    """How a micro-batch is trained: standard, or adversarially (train/adversarial.py)."""


@dataclass
class LoopState:
    step: int = 0
    streams: list[StreamPosition] = field(default_factory=list)
    best_score: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    running_terms: dict[str, float] = field(default_factory=dict)
    """Sums of the step terms (loss, adversarial terms) since the last logged step
    (checkpointed, so a resumed run logs the same means)."""
    loss_log: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> LoopState:
        streams = [StreamPosition(**s) for s in payload.pop("streams")]
        return cls(streams=streams, **payload)


def phase_result(phase_dir: Path) -> Path:
    return phase_dir / RESULT_FILE


def train_phase(
    model: MultiTaskModel,
    tasks: list[TrainTask],
    config: TrainingConfig,
    *,
    epochs: float,
    phase_dir: Path,
    seed: int,
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
    compile_encoder: bool = False,
    find_unused_parameters: bool = False,
) -> dict[str, Any]:
    """Train, keep the best model (by English validation) in ``phase_dir/best``.
    ``compile_encoder``: run the encoder through torch.compile (``runtime.compile``).
    ``find_unused_parameters``: a step may leave parameters without a gradient (the
    heads of tasks not drawn, adapters not active); DDP must then look for them, which
    costs a pass over the graph every step, so it is asked only where needed."""
    set_seed(seed)
    streams = [
        BatchStream(
            len(task.train_features),
            task.batch_size,
            [seed, index],
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            micro_batches=task.accumulation,
            lengths=feature_lengths(task.train_features) if config.group_by_length else None,
        )
        for index, task in enumerate(tasks)
    ]
    steps_per_epoch = sum(s.batches_per_epoch for s in streams)
    total_steps = config.max_steps or max(1, math.ceil(epochs * steps_per_epoch))
    eval_every = config.eval_every_steps or steps_per_epoch
    checkpoint_every = config.checkpoint_every_steps or eval_every

    # The fused kernel is one pass over all parameters (several times faster than the
    # default, on a CPU too) and can skip a step on the device (found_inf).
    raw_optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.weight_decay),
        lr=config.learning_rate,
        eps=config.adam_epsilon,
        fused=_fused_supported(accelerator.device) or None,
    )
    warmup = config.warmup_steps
    if warmup is None:
        warmup = int(config.warmup_fraction * total_steps)
    scheduler = get_linear_schedule_with_warmup(
        raw_optimizer, min(warmup, total_steps), total_steps
    )
    if compile_encoder:
        model.encoder.compile(dynamic=True)
    # Read by accelerate when it wraps the model in DDP (several processes only).
    accelerator.ddp_handler = DistributedDataParallelKwargs(
        find_unused_parameters=find_unused_parameters
    )
    wrapped, optimizer = accelerator.prepare(model, raw_optimizer)
    seam = EmbeddingPerturbation(model.encoder.get_input_embeddings(), _not_perturbed(tokenizer))
    for task in tasks:
        task.objective.attach(model, total_steps)

    state = LoopState(streams=[s.position for s in streams])
    checkpoint = find_checkpoint(phase_dir / LAST_CHECKPOINT)
    if checkpoint is not None:
        state = LoopState.from_json(load_checkpoint(checkpoint, model, optimizer, scheduler))
        objective_states = load_objective_states(checkpoint)
        for index, task in enumerate(tasks):
            task.objective.load_state_tensors(objective_states.get(index, {}))
        for stream, position in zip(streams, state.streams, strict=True):
            stream.position = position
        log.info("resuming %s from step %d of %d", phase_dir.name, state.step, total_steps)
    else:
        log.info(
            "training %s: %d steps (%.3g epochs of %d steps), validation every %d steps",
            ", ".join(t.spec.name for t in tasks),
            total_steps,
            total_steps / steps_per_epoch,  # max_steps may repeat a small set many times
            steps_per_epoch,
            eval_every,
        )

    sampler = TaskSampler([t.weight for t in tasks], seed)
    progress = progress_bar(
        total=total_steps,
        initial=state.step,
        desc=f"train {phase_dir.name}",
        disable=not accelerator.is_main_process,
    )
    log_every = max(1, total_steps // 20)
    # Step terms stay on the device until read, once per logging interval, validation
    # or checkpoint (_StepGuard explains how non-finite steps are handled without sync).
    guard = _StepGuard(config.nonfinite_loss, raw_optimizer, accelerator, tasks)
    # Once, not per step: train() and parameters() walk every module, host time that a
    # short GPU step notices; validation (run_inference) puts the mode back as it found it.
    wrapped.train()
    clipped = [p for p in wrapped.parameters() if p.requires_grad]
    while state.step < total_steps and not state.stopped_early:
        task_index = sampler.task_for_step(state.step)
        task = tasks[task_index]
        terms: dict[str, torch.Tensor] = {}
        accumulation = task.accumulation
        for micro, indices in enumerate(streams[task_index].next_step()):
            columns = task.train_features[indices]
            batch = task.fmt.collate(columns, tokenizer.pad_token_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            last_micro = micro == accumulation - 1
            sync = nullcontext() if last_micro else accelerator.no_sync(wrapped)
            generator = step_generator(seed, state.step, micro)
            micro_batch = _micro_batch(wrapped, task, batch, accelerator, seam, generator)
            with sync, accelerator.autocast():
                for key, value in task.objective.step(micro_batch).items():
                    terms[key] = terms.get(key, 0.0) + value / accumulation
        terms = _mean_over_processes(terms, accelerator)
        norm = None
        if config.max_grad_norm is not None:
            norm = accelerator.clip_grad_norm_(clipped, config.max_grad_norm)
        trained = task.objective.trained_term
        if guard.step_allowed(terms[trained], norm):
            optimizer.step()
            for each in tasks:
                each.objective.after_optimizer_step(model, state.step + 1)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.streams = [s.position for s in streams]
        guard.pending.append(_PendingStep(state.step, task.spec.name, terms, norm, trained))
        progress.update(1)
        finished = state.step == total_steps
        if (
            state.step % log_every == 0
            or state.step % eval_every == 0
            or state.step % checkpoint_every == 0
            or finished
        ):
            last_loss = guard.flush(state)
            progress.set_postfix(loss=f"{last_loss:.4f}", task=task.spec.name)
        if state.step % log_every == 0:
            means = {key: value / log_every for key, value in state.running_terms.items()}
            state.loss_log.append({"step": state.step, **means})
            shown = f"  loss {means['loss']:.4f}" if "loss" in means else ""
            extra = "".join(f"  {k} {v:.4g}" for k, v in means.items() if k != "loss")
            log.info(
                "step %d/%d%s  lr %.3g%s",
                state.step,
                total_steps,
                shown,
                scheduler.get_last_lr()[0],
                extra,
            )
            accelerator.log(training_values(means, scheduler.get_last_lr()[0]), step=state.step)
            state.running_terms = {}

        if state.step % eval_every == 0 or finished:
            _validate_and_track(model, tasks, config, state, phase_dir, tokenizer, accelerator)
        if state.step % checkpoint_every == 0 or finished or state.stopped_early:
            if accelerator.is_main_process:
                objective_states = {i: t.objective.state_tensors() for i, t in enumerate(tasks)}
                save_checkpoint(
                    phase_dir / LAST_CHECKPOINT,
                    model,
                    optimizer,
                    scheduler,
                    state.to_json(),
                    objective_states,
                )
            accelerator.wait_for_everyone()
    progress.close()

    result = {
        "steps": state.step,
        "total_steps": total_steps,
        "best_step": state.best_step,
        "best_score": state.best_score,
        "stopped_early": state.stopped_early,
        "skipped_steps": state.skipped_steps,
        "validation": state.history,
        "train_loss": state.loss_log,
        "processes": accelerator.num_processes,
        "batches": {
            task.spec.name: {
                "examples_per_step": task.batch_size,
                "accumulation": task.accumulation,
                "per_process_micro_batch": stream.micro_batch_size,
            }
            for task, stream in zip(tasks, streams, strict=True)
        },
    }
    if accelerator.is_main_process:
        atomic_write_json(phase_result(phase_dir), result)
    accelerator.wait_for_everyone()
    return result


def validate(
    model: MultiTaskModel,
    tasks: list[TrainTask],
    batch_size: int,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    sharding: Sharding | None = None,
) -> tuple[float, dict[str, dict[str, float]]] | None:
    """Each task's metrics on its English validation split, and the weighted mean of
    their main metrics (a plain mean unless validation weights are set).

    With ``sharding`` each process runs the model on its share of the features, and
    the main process scores the gathered outputs; the others get None."""
    per_task: dict[str, dict[str, float]] = {}
    mains, weights = [], []
    for task in tasks:
        outputs = run_sharded(
            model,
            task.spec.head_name,
            task.fmt,
            task.validation_features,
            sharding,
            batch_size=batch_size,
            pad_token_id=tokenizer.pad_token_id,
            device=device,
            desc=f"validate {task.spec.name}",
        )
        if sharding is not None and sharding.rank != 0:
            continue
        predictions = task.fmt.predict(
            task.spec, task.validation_examples, task.validation_features, outputs
        )
        scores = task.fmt.score(task.spec, task.validation_examples, predictions)
        assert scores is not None, "validation splits are checked to be labelled"
        per_task[task.spec.name] = scores
        mains.append(scores[get_metric(task.spec.metric).main_key])
        weights.append(task.validation_weight)
    if sharding is not None and sharding.rank != 0:
        return None
    combined = sum(m * w for m, w in zip(mains, weights, strict=True)) / sum(weights)
    return combined, per_task


def _validate_and_track(
    model: MultiTaskModel,
    tasks: list[TrainTask],
    config: TrainingConfig,
    state: LoopState,
    phase_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
) -> None:
    sharding = accelerator_sharding(accelerator)
    result = validate(model, tasks, config.eval_batch_size, tokenizer, accelerator.device, sharding)
    if sharding is not None:  # every process must take the same best-model and stop decisions
        result = broadcast_object_list([result])[0]
    assert result is not None
    score, per_task = result
    improved = state.best_score is None or score > state.best_score
    state.history.append({"step": state.step, "score": score, "tasks": per_task})
    log.info("step %d: validation score %.4f%s", state.step, score, " (best)" if improved else "")
    accelerator.log(validation_values(score, per_task), step=state.step)
    if improved:
        state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
        if accelerator.is_main_process:
            save_model(model, phase_dir / BEST_DIR)
    else:
        state.evals_since_best += 1
        patience = config.early_stopping_patience
        if patience is not None and state.evals_since_best >= patience:
            state.stopped_early = True
            log.info("early stopping: no improvement in %d validations", patience)
    accelerator.wait_for_everyone()


def _micro_batch(
    wrapped: torch.nn.Module,
    task: TrainTask,
    batch: dict[str, torch.Tensor],
    accelerator: Accelerator,
    seam: EmbeddingPerturbation,
    generator: torch.Generator,
) -> MicroBatch:
    """What a task's objective needs to train on one batch."""
    head = task.spec.head_name
    return MicroBatch(
        forward=lambda: wrapped(head, batch),
        forward_with=lambda other: other(head, batch),
        loss=lambda outputs: task.fmt.loss(outputs, batch),
        distributions=lambda outputs: task.fmt.distributions(outputs, batch),
        backward=accelerator.backward,
        scale=1 / task.accumulation,
        seam=seam,
        generator=generator,
    )


def _mean_over_processes(
    terms: dict[str, torch.Tensor], accelerator: Accelerator
) -> dict[str, torch.Tensor]:
    """A step's terms averaged over processes (one small all-reduce, no host sync): the
    logged loss is the whole batch's, and every process judges a non-finite step alike."""
    if accelerator.num_processes == 1:
        return terms
    keys = list(terms)
    values = [torch.as_tensor(terms[key], device=accelerator.device) for key in keys]
    mean = accelerator.reduce(torch.stack([v.detach().float() for v in values]), "mean")
    return dict(zip(keys, mean.unbind(), strict=True))


def _not_perturbed(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Padding and special tokens keep their embeddings; the unknown token is text."""
    return [i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id]


@dataclass
class _PendingStep:
    """A finished step whose terms (device scalars) are not read yet."""

    step: int
    task: str
    terms: dict[str, torch.Tensor]
    grad_norm: torch.Tensor | None
    trained: str = "loss"
    """The term the step trained on (the objective's ``trained_term``)."""


class _StepGuard:
    """Non-finite steps without a host sync per step.

    A step's loss and gradient norm stay on the device; ``flush`` reads the pending
    steps at once and acts on them in order, as if read one by one. Policy ``error``
    needs nothing more: the run stops at the next read, which comes before any
    validation or checkpoint, so no model trained on a bad step is ever kept. Policy
    ``skip`` must keep a bad step from updating the model before it is read: the fused
    AdamW kernel does that on the device (its ``found_inf`` input leaves parameters,
    moments and step counts unchanged, as for AMP's gradient scaler). Where it cannot
    (no fused kernel, fp16's own gradient scaler, or an objective that updates state
    after each step, like SMART's teacher) the guard reads one flag per step instead.
    """

    def __init__(
        self,
        policy: str,
        optimizer: torch.optim.Optimizer,
        accelerator: Accelerator,
        tasks: list[TrainTask],
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.pending: list[_PendingStep] = []
        fused = bool(optimizer.defaults.get("fused"))
        stateful = any(
            type(t.objective).after_optimizer_step is not Objective.after_optimizer_step
            for t in tasks
        )
        self.on_device = fused and accelerator.scaler is None and not stateful

    def step_allowed(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> bool:
        """Whether to call the optimizer (which may still skip on the device)."""
        if self.policy == "error":
            return True
        finite = torch.isfinite(torch.as_tensor(loss))
        if grad_norm is not None:
            finite = finite & torch.isfinite(grad_norm)
        if self.on_device:
            self.optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]
            return True
        return bool(finite)

    def flush(self, state: LoopState) -> float:
        """Read the pending steps: stop on (policy ``error``) or log and zero (``skip``)
        the non-finite ones, add the others to the running sums. Returns the last
        step's trained loss."""
        values = _to_floats(
            [v for p in self.pending for v in (*p.terms.values(), p.grad_norm) if v is not None]
        )
        loss = 0.0
        for pending in self.pending:
            terms = {key: next(values) for key in pending.terms}
            norm = next(values) if pending.grad_norm is not None else None
            loss = terms[pending.trained]
            problem = _nonfinite(loss, norm)
            if problem is not None:
                _on_nonfinite(problem, pending.step, pending.task, self.policy)
                state.skipped_steps.append(pending.step)
                terms = {key: 0.0 for key in terms}  # a skipped step adds nothing to the log
                loss = 0.0
            for key, value in terms.items():
                state.running_terms[key] = state.running_terms.get(key, 0.0) + value
        self.pending = []
        return loss


def _to_floats(values: list[torch.Tensor | float]) -> Iterator[float]:
    """Python floats of device scalars, read in one transfer."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    read: Iterator[float] = iter([])
    if tensors:
        device = tensors[0].device  # a term made without the model may sit on the CPU
        read = iter(torch.stack([t.detach().float().to(device) for t in tensors]).tolist())
    return iter([next(read) if isinstance(v, torch.Tensor) else float(v) for v in values])


def _fused_supported(device: torch.device) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return device.type in _get_fused_kernels_supported_devices()


def _nonfinite(loss: float, grad_norm: float | None) -> str | None:
    if not math.isfinite(loss):
        return f"the loss of task '{{task}}' is {loss}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"the gradient norm of task '{{task}}' is {grad_norm}"
    return None


def _on_nonfinite(problem: str, step: int, task: str, policy: str) -> None:
    """Stop the run (policy 'error') or log the step as skipped (policy 'skip')."""
    what = f"step {step}: {problem.format(task=task)}"
    if policy == "error":
        raise XstiltsError(
            f"{what}; the run diverged (lower the learning rate, or set "
            "training.nonfinite_loss: skip to skip such steps)"
        )
    log.warning("%s; step skipped", what)


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights, as usual for transformers."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        (no_decay if plain else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
