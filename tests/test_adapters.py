"""Adapters (AdapterHub's ``adapters`` library) on the tiny XLM-R encoder: what trains,
what is saved, fusion, MAD-X language adapters, merging, resume and bad options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import adapters
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.configs import write_config
from tests.kills import kill_after_checkpoint
from tests.task_fixtures import EVERY_FORMAT, every_format_data, write_format_tasks
from xstilts import evaluate
from xstilts.cli import app
from xstilts.config import LanguageAdaptersConfig, ModelConfig, TinyModelConfig, parse_config
from xstilts.errors import XstiltsError
from xstilts.experiment import evaluation_records, pipeline
from xstilts.experiment.pipeline import run_experiment
from xstilts.formats import get_format
from xstilts.modeling import (
    AdapterSetup,
    AdapterSpec,
    MultiTaskModel,
    attach_adapters,
    build_encoder,
)
from xstilts.tasks import TaskSpec

runner = CliRunner()

SENTENCES = ["The dog sees the cat in the park.", "Der Hund sieht die Katze."]
KINDS = ["seq_bn", "double_seq_bn", "lora", "prefix_tuning", "ia3"]
SHORT = {"target__training__max_steps": 6, "target__training__eval_every_steps": 3}
TWO_TASKS = {
    "intermediate": True,
    "intermediate__tasks": ["demo_nli", "demo_paraphrase"],
    "intermediate__training__max_steps": 6,
    "intermediate__adapters": {"kind": "seq_bn", "options": {"reduction_factor": 4}},
}


class TrainingSpy:
    """Wraps the loop's ``train_phase`` to keep each phase's model and a copy of its
    state before training."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.phases: list[tuple[Any, dict[str, torch.Tensor]]] = []
        real = pipeline.train_phase

        def spy(model, *args, **kwargs):
            before = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.phases.append((model, before))
            return real(model, *args, **kwargs)

        monkeypatch.setattr(pipeline, "train_phase", spy)

    def changed(self, phase: int = -1) -> set[str]:
        model, before = self.phases[phase]
        after = model.state_dict()
        return {key for key, value in before.items() if not torch.equal(value, after[key])}


def _is_adapter(key: str, names: list[str]) -> bool:
    return any(f".{name}." in key or key.endswith(f".{name}") for name in names)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_its_adapter_over_a_bit_identical_encoder(
    kind, tiny_config, tmp_path, monkeypatch
):
    spy = TrainingSpy(monkeypatch)
    config = tiny_config(**SHORT, target__adapters={"kind": kind})
    outcome = run_experiment(config, tmp_path)

    changed = spy.changed()
    encoder_changed = {k for k in changed if k.startswith("encoder.")}
    assert encoder_changed, "the adapter learned nothing"
    names = ["target_demo_paraphrase"]
    assert all(_is_adapter(k, names) for k in encoder_changed), sorted(encoder_changed)[:5]
    model, before = spy.phases[-1]
    frozen = [k for k in before if k.startswith("encoder.") and not _is_adapter(k, names)]
    assert frozen and all(torch.equal(before[k], model.state_dict()[k]) for k in frozen)
    assert any(k.startswith("heads.") for k in changed)  # heads always train

    parameters = outcome.results["parameters"]["target"]
    assert 0 < parameters["trained"] < parameters["total"] / 2
    assert outcome.results["adapters"] == f"target:{kind}"
    assert 0 <= outcome.results["average"] <= 100


def test_saved_folders_hold_only_the_trained_parts(tiny_config, tmp_path):
    config = tiny_config(**SHORT, target__adapters={"kind": "lora"}, runtime__keep="all")
    outcome = run_experiment(config, tmp_path)
    best = outcome.run_dir / "best"
    assert sorted(p.name for p in best.iterdir()) == [
        "adapterhub",
        "base.json",
        "heads.json",
        "heads.safetensors",
        "trained.safetensors",
    ]
    trained = load_file(str(best / "trained.safetensors"))
    assert trained and all("target_demo_paraphrase" in key for key in trained)
    checkpoint = load_file(str(outcome.run_dir / "checkpoints" / "last" / "model.safetensors"))
    assert set(checkpoint) == {f"encoder.{k}" for k in trained} | {
        k for k in checkpoint if k.startswith("heads.")
    }
    base = json.loads((best / "base.json").read_text())
    assert len(base["sha256"]) == 64 and base["model"] == "tiny-xlmr-h32-l2"
    assert base["layout"] == "adapters"
    exported = best / "adapterhub" / "target_demo_paraphrase"
    assert (exported / "adapter_config.json").is_file()
    assert (exported / "adapter.safetensors").is_file()


def test_an_adapter_put_back_on_another_base_is_refused(tiny_config, tmp_path):
    config = tiny_config(**SHORT, target__adapters={"kind": "seq_bn"}, runtime__keep="best")
    outcome = run_experiment(config, tmp_path)
    base_file = outcome.run_dir / "best" / "base.json"
    base = json.loads(base_file.read_text())
    base_file.write_text(json.dumps({**base, "sha256": "0" * 64}))
    evaluation_records.clear(outcome.run_dir)  # so that the model is loaded again
    with pytest.raises(XstiltsError, match=r"base\.json: these adapters were trained on"):
        run_experiment(config, tmp_path)


def test_layer_norms_can_train_beside_the_adapter_and_the_encoder_with_it(
    tiny_config, tmp_path, monkeypatch
):
    spy = TrainingSpy(monkeypatch)
    run_experiment(
        tiny_config(**SHORT, target__adapters={"kind": "seq_bn", "also_train": ["layer_norms"]}),
        tmp_path / "norms",
    )
    names = ["target_demo_paraphrase"]
    base_changed = {
        k for k in spy.changed() if k.startswith("encoder.") and not _is_adapter(k, names)
    }
    assert base_changed and all("LayerNorm" in k for k in base_changed)

    run_experiment(
        tiny_config(**SHORT, target__adapters={"kind": "seq_bn", "train": "adapters_and_encoder"}),
        tmp_path / "all",
    )
    assert any("attention.self.query.weight" in k for k in spy.changed())


def test_multi_task_adapters_then_fusion_trains_only_the_fusion_layer_and_head(
    tiny_config, tmp_path, monkeypatch
):
    """Pfeiffer et al. 2021: the target task's own adapter is trained first, alone on the
    target task, then fused with the intermediate ones; only the fusion layer and the
    head train in the fusion phase."""
    spy = TrainingSpy(monkeypatch)
    config = tiny_config(
        **TWO_TASKS, **SHORT, target__adapters={"start": "fusion"}, runtime__keep="best"
    )
    assert config.target.adapters.include_target  # the default
    outcome = run_experiment(config, tmp_path)

    tasks = ["task_demo_nli", "task_demo_paraphrase"]
    inter_changed = spy.changed(0)
    for name in tasks:  # each task's adapter trained on its own batches
        assert any(_is_adapter(k, [name]) for k in inter_changed), name
    assert all(_is_adapter(k, tasks) or k.startswith("heads.") for k in inter_changed)

    own = "target_demo_paraphrase"
    own_changed = spy.changed(1)  # the target's own adapter, alone
    assert any(_is_adapter(k, [own]) for k in own_changed)
    assert all(_is_adapter(k, [own]) or k.startswith("heads.") for k in own_changed)
    own_model, _ = spy.phases[1]
    assert str(own_model.encoder.active_adapters) == f"Stack[{own}]"

    target_changed = spy.changed(2)
    fusion = {k for k in target_changed if "adapter_fusion_layer" in k}
    assert fusion
    assert target_changed - fusion == {k for k in target_changed if k.startswith("heads.")}
    model, before = spy.phases[2]
    fused = "Fuse[task_demo_nli, task_demo_paraphrase, target_demo_paraphrase]"
    assert str(model.encoder.active_adapters) == fused
    own_best = outcome.run_dir / "stages" / "fusion-demo_paraphrase" / "best"
    saved = load_file(str(own_best / "trained.safetensors"))
    assert saved and all(torch.equal(before[f"encoder.{k}"], v) for k, v in saved.items())
    assert outcome.results["adapters"] == "intermediate:seq_bn,target:fusion(dynamic)"
    inter_parameters = outcome.results["parameters"]["intermediate"]
    assert inter_parameters["adapters"]["trained"] == tasks


def test_fusion_of_the_intermediate_adapters_only(tiny_config, tmp_path, monkeypatch):
    spy = TrainingSpy(monkeypatch)
    target = {"start": "fusion", "include_target": False}
    outcome = run_experiment(tiny_config(**TWO_TASKS, **SHORT, target__adapters=target), tmp_path)
    assert len(spy.phases) == 2  # intermediate, fusion: no own adapter
    model, _ = spy.phases[1]
    assert str(model.encoder.active_adapters) == "Fuse[task_demo_nli, task_demo_paraphrase]"
    summary = "intermediate:seq_bn,target:fusion(dynamic,intermediate-only)"
    assert outcome.results["adapters"] == summary


def test_continuing_one_task_adapter(tiny_config, tmp_path, monkeypatch):
    spy = TrainingSpy(monkeypatch)
    target = {"start": "continue", "from_task": "demo_nli"}
    outcome = run_experiment(tiny_config(**TWO_TASKS, **SHORT, target__adapters=target), tmp_path)
    _, before = spy.phases[1]
    changed = {k for k in spy.changed(1) if k.startswith("encoder.")}
    assert changed and all(_is_adapter(k, ["task_demo_nli"]) for k in changed)
    # It starts from the intermediate phase's best adapter, not a fresh one.
    inter_best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    saved = load_file(str(inter_best / "trained.safetensors"))
    assert all(torch.equal(before[k], saved[k.removeprefix("encoder.")]) for k in changed)


def test_merging_a_lora_adapter_then_fine_tuning_the_whole_encoder(
    tiny_config, tmp_path, monkeypatch
):
    spy = TrainingSpy(monkeypatch)
    changes = {**TWO_TASKS, "intermediate__adapters": {"kind": "lora"}}
    target = {"start": "merge", "from_task": "demo_nli"}
    config = tiny_config(**changes, **SHORT, target__adapters=target, runtime__keep="best")
    outcome = run_experiment(config, tmp_path)
    model, before = spy.phases[1]
    assert model.adapters is None and not model.encoder.adapters_config.adapters
    pretrained, _ = spy.phases[0]
    query = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[query], pretrained.state_dict()[query])  # LoRA folded in
    assert query in spy.changed(1)  # and the whole encoder trains
    # merged: every encoder parameter may differ from the pretrained one, all are saved
    saved = load_file(str(outcome.run_dir / "best" / "trained.safetensors"))
    assert set(saved) == {name for name, _ in model.encoder.named_parameters()}


def _madx_payload(tiny_config, demo_data, folder: Path, steps: int) -> dict[str, Any]:
    """A target-adapter config with MAD-X language adapters: the demo's tasks and
    continued-MLM text in English and German (tatoeba_mlm) under ``folder``."""
    text_tasks = write_format_tasks(folder)
    (folder / "demo").symlink_to(demo_data[0] / "demo")
    payload = tiny_config(**SHORT, target__adapters={"kind": "seq_bn"}).model_dump(mode="json")
    payload["data"]["data_dir"] = str(folder)
    payload["data"]["task_files"].append(str(text_tasks))
    payload["language_adapters"] = {
        "task": "tatoeba_mlm",
        "training": {"max_steps": steps, "learning_rate": 1e-3, "batch_size": 8},
    }
    return payload


def test_madx_swaps_in_each_languages_adapter_at_evaluation(
    tiny_config, demo_data, tmp_path, monkeypatch
):
    payload = _madx_payload(tiny_config, demo_data, tmp_path, steps=4)
    active: dict[str, str] = {}
    real_language = evaluate.Evaluator.language

    def spy(self, item, *args, **kwargs):
        scores = real_language(self, item, *args, **kwargs)
        active[item.language] = str(self.model.encoder.active_adapters)
        return scores

    monkeypatch.setattr(evaluate.Evaluator, "language", spy)
    outcome = run_experiment(parse_config(payload), tmp_path / "out")

    assert active == {
        "en": "Stack[lang_en, target_demo_paraphrase]",
        "de": "Stack[lang_de, target_demo_paraphrase]",
        "fr": "Stack[lang_en, target_demo_paraphrase]",  # no French adapter: English's
    }
    used = {lang: s["language_adapter"] for lang, s in outcome.results["languages"].items()}
    assert used == {"en": "en", "de": "de", "fr": "en"}
    language_runs = sorted(p.name for p in (tmp_path / "out" / "language_adapters").iterdir())
    assert [name[:3] for name in language_runs] == ["de-", "en-"]
    trained = load_file(
        str(
            tmp_path
            / "out"
            / "language_adapters"
            / language_runs[0]
            / "best"
            / "trained.safetensors"
        )
    )
    assert any("invertible_adapters.lang_de" in key for key in trained)

    # Another run with the same language adapters reuses them; 'none' drops the fallback.
    payload["seed"] = 8
    payload["language_adapters"]["fallback"] = "none"
    again = run_experiment(parse_config(payload), tmp_path / "out")
    assert again.results["languages"]["fr"]["language_adapter"] is None
    assert active["fr"] == "Stack[target_demo_paraphrase]"
    assert (
        sorted(p.name for p in (tmp_path / "out" / "language_adapters").iterdir()) == language_runs
    )


def test_madx_mlm_logits_are_the_adapters_librarys_own(tokenizer):
    """MAD-X (and the library's LM heads) run the inverse of the invertible adapter
    after the head's transform (dense, gelu, LayerNorm), right before the tied output
    embeddings: the logits equal those of the library's own masked-LM head."""
    torch.manual_seed(0)
    encoder = build_encoder(ModelConfig(tiny=TinyModelConfig()), tokenizer)
    fmt = get_format("mlm")
    spec = TaskSpec(name="text", family="mlm", format="mlm", metric="mlm_accuracy")
    head = fmt.build_head(spec, encoder)
    setup = AdapterSetup(
        new=[AdapterSpec("lang_en", "seq_bn_inv")],
        head_adapters={"text": None},
        trained=["lang_en"],
        language_adapters={"en": "lang_en"},
        training_language="en",
    )
    routes = attach_adapters(encoder, setup, ["text"])
    with torch.no_grad():  # an invertible adapter far from the identity
        for name, parameter in encoder.named_parameters():
            if "lang_en" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model = MultiTaskModel(encoder, {"text": head}, {"text": fmt}, adapters=setup, routes=routes)

    library = adapters.XLMRobertaAdapterModel(encoder.config)
    library.add_adapter("lang_en", config="seq_bn_inv")
    library.add_masked_lm_head("mlm")
    missing = library.roberta.load_state_dict(encoder.state_dict(), strict=False).missing_keys
    assert all(key.startswith("pooler.") for key in missing)
    ours, theirs = head.lm_head, library.heads["mlm"]  # dense, gelu, LayerNorm, decoder
    with torch.no_grad():
        for mine, other in ((ours.dense, theirs[0]), (ours.layer_norm, theirs[2])):
            other.weight.copy_(mine.weight)
            other.bias.copy_(mine.bias)
        theirs[3].weight.copy_(ours.decoder.weight)
        theirs[3].bias.copy_(ours.bias)
    library.set_active_adapters("lang_en")

    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    batch = {**encoded, "labels": labels}
    model.eval(), library.eval()
    with torch.no_grad():
        logits = model("text", batch)["logits"]
        expected = library(**encoded).logits[labels != -100]
    assert logits.shape == expected.shape and logits.shape[0] > 0
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)

    with torch.no_grad():  # not a vacuous match: the inverse adapter changes the logits
        plain = ours(encoder(**encoded).last_hidden_state[labels != -100])
    assert (plain - expected).abs().max() > 1e-3


def test_language_adapters_train_at_the_madx_learning_rate_by_default():
    assert LanguageAdaptersConfig(task="wiki_mlm").training.learning_rate == 1e-4
    set_steps = LanguageAdaptersConfig(task="wiki_mlm", training={"max_steps": 5})
    assert (set_steps.training.learning_rate, set_steps.training.max_steps) == (1e-4, 5)
    own = LanguageAdaptersConfig(task="wiki_mlm", training={"learning_rate": 1e-3})
    assert own.training.learning_rate == 1e-3


def test_an_adapter_run_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(
        **TWO_TASKS,
        target__adapters={"start": "fusion"},
        target__training__max_steps=8,
        target__training__checkpoint_every_steps=2,
        runtime__keep="best",
    )
    reference = run_experiment(config, tmp_path / "uninterrupted")

    def interrupted():
        return run_experiment(config, tmp_path / "interrupted")

    # Killed in the target's own-adapter stage, then in the fusion phase.
    kill_after_checkpoint(monkeypatch, interrupted, 4, "stages/fusion-")
    kill_after_checkpoint(monkeypatch, interrupted, 4, f"{reference.run_dir.name}/checkpoints")
    resumed = interrupted()
    own = Path("stages") / "fusion-demo_paraphrase"
    for folder in (own / "best", Path("best")):
        for name in ("trained.safetensors", "heads.safetensors"):
            expected = load_file(str(reference.run_dir / folder / name))
            got = load_file(str(resumed.run_dir / folder / name))
            assert expected.keys() == got.keys()
            assert all(torch.equal(expected[k], got[k]) for k in expected), folder / name
    scores = {lang: s["accuracy"] for lang, s in resumed.results["languages"].items()}
    assert scores == {lang: s["accuracy"] for lang, s in reference.results["languages"].items()}


def test_every_trainable_format_trains_through_per_task_adapters(
    stand_ins, demo_data, tmp_path, feature_cache, monkeypatch
):
    spy = TrainingSpy(monkeypatch)
    task_files = every_format_data(tmp_path, stand_ins, demo_data)
    intermediate = [task for task in EVERY_FORMAT if task != "xcopa"]
    small = {"max_train_examples": 48, "max_eval_examples": 16, "batch_size": 8}
    config = parse_config(
        {
            "seed": 3,
            "model": {"tiny": {}},
            "intermediate": {
                "tasks": intermediate,
                "sampler": {"strategy": "uniform"},
                "training": {**small, "learning_rate": 1e-3, "max_steps": 15, "max_length": 96},
                "adapters": {"kind": "seq_bn"},
            },
            "target": {
                "task": "xcopa",
                "training": {**small, "learning_rate": 1e-3, "max_steps": 3, "max_length": 48},
                "adapters": {"start": "fusion"},
            },
            "evaluation": {"languages": ["it"], "max_examples": 20},
            "data": {
                "source": "local",
                "data_dir": str(tmp_path),
                "task_files": [str(path) for path in task_files],
                "cache_dir": str(feature_cache),
            },
        }
    )
    outcome = run_experiment(config, tmp_path / "runs")
    changed = spy.changed(0)
    for task in intermediate:
        assert any(f".task_{task}." in k for k in changed), task
    assert 0 <= outcome.results["languages"]["it"]["accuracy"] <= 100


# -- bad options ---------------------------------------------------------------------


def _run_fails(tmp_path: Path, demo_data_section: dict, changes: dict, *fragments: str) -> None:
    payload = {
        "model": {"tiny": {}},
        "target": {"task": "demo_paraphrase", "training": {"max_steps": 2}},
        "evaluation": {"languages": ["en"], "max_examples": 10},
        "data": demo_data_section,
        **changes,
    }
    path = write_config(tmp_path / "config.yaml", payload)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out" / "runs").exists() or not any(
        (tmp_path / "out" / "runs").rglob("training.json")
    )


BAD_OPTIONS = [
    (
        {"target": {"task": "demo_paraphrase", "adapters": {"kind": "bottleneck"}}},
        ["target.adapters.kind: 'bottleneck' is not an adapter kind", "seq_bn", "lora", "ia3"],
    ),
    (
        {
            "target": {
                "task": "demo_paraphrase",
                "adapters": {"kind": "lora", "options": {"rank": 8}},
            }
        },
        ["target.adapters.options: rank is not an option of 'lora'", "alpha", "r,"],
    ),
    (
        {"target": {"task": "demo_paraphrase", "adapters": {"kind": "seq_bn", "train": "all"}}},
        ["target.adapters.train", "adapters_and_encoder"],
    ),
    (
        {"target": {"task": "demo_paraphrase", "adapters": {"start": "fusion"}}},
        ["start 'fusion' needs intermediate.adapters"],
    ),
    (
        {
            "intermediate": {"tasks": ["demo_nli"], "adapters": {"kind": "seq_bn"}},
            "target": {"task": "demo_paraphrase"},
        },
        ["intermediate.adapters is set: set target.adapters too", "fresh, continue, fusion"],
    ),
    (
        {
            "intermediate": {"tasks": ["demo_nli"], "adapters": {"kind": "seq_bn"}},
            "target": {
                "task": "demo_paraphrase",
                "adapters": {"start": "fusion", "include_target": False},
            },
        },
        ["fuses two or more adapters", "those of two or more intermediate tasks"],
    ),
    (
        {"target": {"task": "demo_paraphrase", "adapters": {"include_target": True}}},
        ["include_target applies to start 'fusion' only"],
    ),
    (
        {
            "intermediate": {
                "tasks": ["demo_nli", "demo_paraphrase"],
                "adapters": {"kind": "lora"},
            },
            "target": {"task": "demo_paraphrase", "adapters": {"start": "fusion"}},
        },
        ["intermediate.adapters.kind: AdapterFusion fuses bottleneck adapters", "not 'lora'"],
    ),
    (
        {
            "intermediate": {"tasks": ["demo_nli"], "adapters": {"kind": "seq_bn"}},
            "target": {"task": "demo_paraphrase", "adapters": {"start": "merge"}},
        },
        ["start 'merge' folds a ia3 or lora adapter", "not 'seq_bn'"],
    ),
    (
        {
            "intermediate": {"tasks": ["demo_nli"], "adapters": {"kind": "lora"}},
            "target": {
                "task": "demo_paraphrase",
                "adapters": {"start": "continue", "from_task": "x"},
            },
        },
        ["from_task 'x' is not among intermediate.tasks (demo_nli)"],
    ),
    (
        {
            "target": {"task": "demo_paraphrase", "adapters": {"kind": "seq_bn"}},
            "language_adapters": {"task": "demo_nli"},
        },
        ["language_adapters.task: 'demo_nli' has format classification", "'mlm' task"],
    ),
]


@pytest.mark.parametrize(("changes", "fragments"), BAD_OPTIONS)
def test_bad_adapter_options_exit_2_with_the_allowed_ones(
    changes, fragments, tmp_path, demo_data_section
):
    _run_fails(tmp_path, demo_data_section, changes, *fragments)


def test_a_grid_trains_each_language_adapter_once_before_the_runs_on_it(
    tiny_config, demo_data, tmp_path
):
    from rich.console import Console

    from xstilts.experiment.grid import parse_grid, plan_grid
    from xstilts.experiment.grid_runner import run_grid

    base = _madx_payload(tiny_config, demo_data, tmp_path, steps=2)
    base.pop("seed")
    grid = parse_grid(
        {
            "grid": {
                "seeds": [1, 2],
                "intermediate": {"seq_bn": None, "lora": None},
                "option_settings": {"lora": {"target": {"adapters": {"kind": "lora"}}}},
                "targets": ["demo_paraphrase"],
            },
            "base": base,
        },
        "test",
    )
    out = tmp_path / "grid"
    plan = plan_grid(grid, out)
    adapters = {run.name for run in plan.language_adapters}
    assert [run.option for run in plan.language_adapters] == ["en", "de"]
    assert all(set(run.depends_on) == adapters for run in plan.targets)
    jobs = plan.jobs(out, grid.grid.resources)
    assert [job.kind for job in jobs[:2]] == ["language_adapter"] * 2

    results = run_grid(grid, out, Console(record=True))
    assert len(results) == 6 and all(r.ok for r in results)
    assert len(list((out / "language_adapters").glob("*/training.json"))) == 2
    summaries = {json.loads(p.read_text())["adapters"] for p in out.glob("runs/*/results.json")}
    assert summaries == {"target:seq_bn,madx:seq_bn_inv", "target:lora,madx:seq_bn_inv"}
