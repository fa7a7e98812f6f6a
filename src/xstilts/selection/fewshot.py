"""Few-shot fine-tuning as an estimator: the target trained for a few steps from an
option's encoder through the one training loop (train/loop.py), on the estimator's
subset of its training data, with the run's own learning rate and batch size, then
scored on (part of) its English validation split. The folder it trains in is
scratch, removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import datasets
from accelerate.utils import set_seed

from xstilts.config import TrainingConfig
from xstilts.experiment.pipeline import load_task_split
from xstilts.experiment.runtime import get_accelerator
from xstilts.formats import get_format
from xstilts.modeling import MultiTaskModel, build_encoder
from xstilts.selection import data
from xstilts.selection.candidates import Candidate
from xstilts.tasks.spec import TaskSpec
from xstilts.train.loop import TrainTask, train_phase

SCRATCH_DIR = "selection/scratch"


def fewshot_score(
    ctx,  # estimators.Context (not imported: it imports this module)
    candidate: Candidate,
    task: TaskSpec,
    training: TrainingConfig,
    features: datasets.Dataset,
    start: Path | None,
) -> tuple[float, int]:
    """The English validation score after ``fewshot_steps`` steps, and the steps."""
    settings = ctx.settings
    config = candidate.config
    fmt = get_format(task.format)
    tokenizer = ctx.tokenizer(config.model)
    assert training.max_length is not None and training.batch_size is not None
    validation = load_task_split(
        task, "validation", "en", config, settings.fewshot_validation_examples
    )
    validation_features = data.encoded(validation, task, config, tokenizer, training.max_length)
    steps = settings.fewshot_steps
    short = training.model_copy(
        update={
            "max_steps": steps,
            "eval_every_steps": steps,
            "checkpoint_every_steps": steps,
            "early_stopping_patience": None,
        }
    )
    set_seed(config.seed)  # the head starts random
    encoder = build_encoder(config.model, tokenizer, start)  # trained: never a shared one
    head = fmt.build_head(task, encoder)
    model = MultiTaskModel(encoder, {task.head_name: head}, {task.head_name: fmt})
    train_task = TrainTask(
        spec=task,
        fmt=fmt,
        train_features=features,
        validation_examples=validation.examples,
        validation_features=validation_features,
        batch_size=training.batch_size,
        accumulation=training.gradient_accumulation_steps,
    )
    scratch_root = ctx.out_root / SCRATCH_DIR
    scratch_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{candidate.option}-", dir=scratch_root))
    try:
        result = train_phase(
            model,
            [train_task],
            short,
            epochs=1.0,
            phase_dir=folder,
            seed=config.seed,
            tokenizer=tokenizer,
            accelerator=get_accelerator(config.runtime),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return float(result["best_score"]), int(result["steps"])
