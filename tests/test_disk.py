"""Disk: what runs keep (runtime.keep), best models as deltas on the pretrained encoder,
run folders that move, a full disk, ``xstilts clean`` and the dry run's estimate."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.kills import kill_after_checkpoint
from xstilts import io
from xstilts.cli import app
from xstilts.config import ModelConfig
from xstilts.errors import XstiltsError
from xstilts.experiment import disk, pipeline, retention
from xstilts.experiment.grid import parse_grid
from xstilts.experiment.grid_runner import run_grid
from xstilts.experiment.pipeline import run_experiment
from xstilts.experiment.resolve import resolve
from xstilts.experiment.run_folder import RunLock
from xstilts.modeling import build_encoder, deltas, whole_best
from xstilts.train import loop

runner = CliRunner()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _scores(results: dict) -> dict:
    return {lang: values["accuracy"] for lang, values in results["languages"].items()}


# -- retention -----------------------------------------------------------------------


def test_keep_changes_no_run_id(tiny_config):
    names = {
        keep: (resolve(c).run_name, resolve(c).intermediate_name)
        for keep in ("all", "best", "results")
        for c in [tiny_config(intermediate=True, runtime__keep=keep)]
    }
    assert names["all"] == names["best"] == names["results"]


@pytest.mark.parametrize(
    ("keep", "target_best", "checkpoints"),
    [("results", False, False), ("best", True, False), ("all", True, True)],
)
def test_what_each_retention_keeps(tiny_config, tmp_path, keep, target_best, checkpoints):
    outcome = run_experiment(tiny_config(intermediate=True, runtime__keep=keep), tmp_path)
    inter_dir = tmp_path / "intermediate" / outcome.results["intermediate_run"]
    assert (inter_dir / "best" / "trained.safetensors").is_file()  # targets start from it
    assert (outcome.run_dir / "best").is_dir() == target_best
    for folder in (inter_dir, outcome.run_dir):
        assert (folder / "checkpoints" / "last").is_dir() == checkpoints
    assert {"results.json", "training.json"} <= _files(outcome.run_dir)
    for scores in outcome.results["languages"].values():
        assert (outcome.run_dir / scores["predictions"]).is_file()  # relative to the run


def test_a_finished_run_run_again_under_a_new_retention_is_cleaned_not_retrained(
    tiny_config, tmp_path, monkeypatch
):
    first = run_experiment(tiny_config(runtime__keep="all"), tmp_path)
    assert (first.run_dir / "checkpoints" / "last").is_dir()
    monkeypatch.setattr(pipeline, "train_phase", lambda *a, **k: pytest.fail("retrained"))
    again = run_experiment(tiny_config(), tmp_path)
    assert _scores(again.results) == _scores(first.results)
    assert not (first.run_dir / "checkpoints").exists() and not (first.run_dir / "best").exists()


def test_a_removed_model_cannot_evaluate_new_languages_and_says_what_to_do(tiny_config, tmp_path):
    first = run_experiment(tiny_config(), tmp_path)
    stored = (first.run_dir / "results.json").read_text()
    more = tiny_config(evaluation__languages=["en", "de", "fr", "es"])
    with pytest.raises(XstiltsError) as caught:
        run_experiment(more, tmp_path)
    message = str(caught.value)
    assert "cannot evaluate es" in message
    assert "runtime.keep: best" in message and "--restart-phase target" in message
    assert (first.run_dir / "results.json").read_text() == stored  # the scores stay
    # what it says to do works, and gives the same scores
    redone = run_experiment(
        tiny_config(evaluation__languages=["en", "de", "fr", "es"], runtime__keep="best"),
        tmp_path,
        restart_phase="target",
    )
    assert {k: v for k, v in _scores(redone.results).items() if k != "es"} == _scores(first.results)


# -- best/ as a delta ------------------------------------------------------------------


def test_best_holds_only_what_differs_from_the_pretrained_encoder(tiny_config, tmp_path):
    config = tiny_config(intermediate=True, runtime__keep="best", model__freeze_embeddings=True)
    outcome = run_experiment(config, tmp_path)
    inter_best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    for best in (inter_best, outcome.run_dir / "best"):
        saved = load_file(str(best / "trained.safetensors"))
        assert saved and not any(name.startswith("embeddings.") for name in saved)
        base = json.loads((best / "base.json").read_text())
        assert base["layout"] == "encoder-delta" and len(base["pretrained_sha256"]) == 64
        assert not (best / "encoder").exists()  # neither the whole model nor the tokenizer
    start = json.loads((outcome.run_dir / "best" / "base.json").read_text())["start"]
    assert start == str(inter_best.relative_to(tmp_path))


def test_a_target_best_stands_without_the_intermediate_it_started_from(
    tiny_config, tmp_path, tokenizer
):
    outcome = run_experiment(tiny_config(intermediate=True, runtime__keep="best"), tmp_path)
    inter_best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    target_best = outcome.run_dir / "best"
    inter_keys = set(load_file(str(inter_best / "trained.safetensors")))
    assert inter_keys <= set(load_file(str(target_best / "trained.safetensors")))
    model = ModelConfig.model_validate({"tiny": {}})
    before = build_encoder(model, tokenizer, target_best).state_dict()
    shutil.rmtree(tmp_path / "intermediate")
    after = build_encoder(model, tokenizer, target_best).state_dict()
    assert all((after[name] == tensor).all() for name, tensor in before.items())


def test_a_delta_on_another_base_is_refused_naming_the_file(tiny_config, tmp_path, tokenizer):
    outcome = run_experiment(tiny_config(intermediate=True), tmp_path)
    best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    other = ModelConfig.model_validate({"tiny": {"init_seed": 5}})
    with pytest.raises(XstiltsError, match=rf"{re.escape(str(best / 'base.json'))}: .*differ"):
        build_encoder(other, tokenizer, best)


_WORDS = "embeddings.word_embeddings.weight"


def _train_and_save(encoder, tokenizer, folder: Path, text: list[str], weight_decay=0.0):
    """A few AdamW steps (the loop's parameter groups) on ``text``, then save_model."""
    from xstilts.modeling import MultiTaskModel, save_model

    batch = tokenizer(text, padding=True, return_tensors="pt")
    groups = loop._parameter_groups(encoder, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=1e-2)
    encoder.train()
    for _ in range(3):
        encoder(**batch).last_hidden_state.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    save_model(MultiTaskModel(encoder, {}, {}, base={"model": "tiny"}), folder)
    return load_file(str(folder / "trained.safetensors"))


def _same_bits(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        a, b = tensor.contiguous(), theirs[name].contiguous()
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), name


def test_trained_embeddings_are_saved_as_the_rows_that_changed_and_load_bit_for_bit(
    tokenizer, tmp_path
):
    model = ModelConfig.model_validate({"tiny": {}})
    pretrained = build_encoder(model, tokenizer).get_input_embeddings().weight.detach().clone()
    vocabulary = pretrained.shape[0]

    first = build_encoder(model, tokenizer)
    saved = _train_and_save(first, tokenizer, tmp_path / "a", ["The cat sat on the mat."])
    rows = saved[_WORDS + ":rows"]
    assert rows.dtype == torch.int64 and 0 < len(rows) < vocabulary
    assert saved[_WORDS].shape == (len(rows), pretrained.shape[1])
    trained = first.get_input_embeddings().weight.detach()
    differ = (trained != pretrained).any(dim=1).nonzero().flatten()
    assert torch.equal(rows, differ)  # measured: exactly the rows that changed
    loaded = build_encoder(model, tokenizer, tmp_path / "a")
    _same_bits(loaded.state_dict(), first.state_dict())

    # a phase started from it keeps the union, relative to the pretrained matrix
    second = build_encoder(model, tokenizer, tmp_path / "a")
    more = _train_and_save(second, tokenizer, tmp_path / "b", ["Dogs run quickly in parks!"])
    union = more[_WORDS + ":rows"]
    assert set(rows.tolist()) < set(union.tolist()) and len(union) < vocabulary
    final = second.get_input_embeddings().weight.detach()
    assert torch.equal(final[union], more[_WORDS])
    _same_bits(build_encoder(model, tokenizer, tmp_path / "b").state_dict(), second.state_dict())


def test_embeddings_that_all_change_still_round_trip(tokenizer, tmp_path):
    model = ModelConfig.model_validate({"tiny": {}})
    encoder = build_encoder(model, tokenizer)
    saved = _train_and_save(encoder, tokenizer, tmp_path / "a", ["A cat."], weight_decay=0.1)
    pretrained = build_encoder(model, tokenizer).get_input_embeddings().weight
    nonzero = int(pretrained.detach().any(dim=1).sum())  # decay leaves the padding row 0
    assert len(saved[_WORDS + ":rows"]) == nonzero >= pretrained.shape[0] - 1
    _same_bits(build_encoder(model, tokenizer, tmp_path / "a").state_dict(), encoder.state_dict())


def test_a_whole_embedding_matrix_without_a_reference_still_saves_and_loads(tokenizer, tmp_path):
    model = ModelConfig.model_validate({"tiny": {}})
    encoder = build_encoder(model, tokenizer)
    deltas.mark_all_changed(encoder)  # as a merged adapter does: no reference copy
    saved = _train_and_save(encoder, tokenizer, tmp_path / "a", ["A cat."])
    assert _WORDS + ":rows" not in saved and saved[_WORDS].shape[0] == len(tokenizer)
    _same_bits(build_encoder(model, tokenizer, tmp_path / "a").state_dict(), encoder.state_dict())


def test_a_whole_model_saved_before_deltas_still_loads(tokenizer, tmp_path):
    model = ModelConfig.model_validate({"tiny": {}})
    original = build_encoder(model, tokenizer)
    original.save_pretrained(tmp_path / "best" / "encoder")
    loaded = build_encoder(model, tokenizer, tmp_path / "best")
    for name, tensor in original.state_dict().items():
        assert (loaded.state_dict()[name] == tensor).all(), name


# -- run folders that move --------------------------------------------------------------


def _grid_payload(data: dict) -> dict:
    training = {"max_steps": 6, "batch_size": 16, "checkpoint_every_steps": 2}
    return {
        "grid": {
            "seeds": [1],
            "intermediate": {"baseline": None, "nli": {"tasks": ["demo_nli"]}},
            "targets": ["demo_paraphrase"],
        },
        "base": {
            "model": {"tiny": {}},
            "intermediate": {"training": dict(training)},
            "target": {"training": dict(training)},
            "evaluation": {"languages": ["en", "de"], "max_examples": 20},
            "data": data,
        },
    }


def _all_results(grid_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: _scores(json.loads(p.read_text()))
        for p in (grid_dir / "runs").glob("*/results.json")
    }


def test_a_grid_moved_mid_run_resumes_and_reports_from_its_new_place(
    tmp_path, demo_data_section, monkeypatch
):
    payload = _grid_payload(demo_data_section)
    grid = parse_grid(payload, "test")
    reference = tmp_path / "reference"
    run_grid(grid, reference, Console())

    first = tmp_path / "first"
    kill_after_checkpoint(monkeypatch, lambda: run_grid(grid, first, Console()), 4, "runs/")
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    first.rename(moved)
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(payload))
    result = runner.invoke(app, ["run", str(config), "--out", str(moved)])
    assert result.exit_code == 0, result.output
    assert _all_results(moved) == _all_results(reference)
    assert any("resuming" in p.read_text() for p in moved.rglob("run.log"))

    for path in moved.rglob("*.json"):  # nothing points back to where it was made
        assert str(first) not in path.read_text() and str(moved) not in path.read_text(), path
    report = runner.invoke(app, ["report", str(moved), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    table = runner.invoke(app, ["results", str(moved)])
    assert table.exit_code == 0 and "2 runs" in table.output


# -- a full disk ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs where mounting works (root), else a plain folder: the test then
    simulates the full disk instead (``_fill``)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)]
    mounted = subprocess.run(mount, capture_output=True).returncode == 0
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    """Leave no space in ``folder``'s file system: a filler file on a tmpfs (returned),
    else every later write of a model, checkpoint or JSON file raises ENOSPC."""
    if folder.stat().st_dev != folder.parent.stat().st_dev:  # the tmpfs
        filler = folder / "filler"
        with filler.open("wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
            except OSError:
                pass
        return filler

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "_write_text", no_space)
    from xstilts.modeling import saving
    from xstilts.train import checkpoint

    monkeypatch.setattr(saving, "save_file", no_space)
    monkeypatch.setattr(checkpoint, "save_file", no_space)
    return None


def test_a_full_disk_keeps_the_last_checkpoint_and_exits_2_naming_folder_and_need(
    tiny_config, tmp_path, small_disk, monkeypatch
):
    settings = {"target__training__checkpoint_every_steps": 3}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(tiny_config(seed=3, **settings).to_yaml())
    reference = run_experiment(tiny_config(seed=3, **settings), tmp_path / "reference")
    finished = run_experiment(tiny_config(**settings), small_disk)
    finished_files = {p: p.read_bytes() for p in finished.run_dir.rglob("*") if p.is_file()}

    real_save = loop.save_checkpoint
    filler: list[Path | None] = []

    def save_then_fill(target, *rest):
        real_save(target, *rest)
        if rest[3]["step"] == 6 and not filler:
            filler.append(_fill(small_disk, monkeypatch))

    monkeypatch.setattr(loop, "save_checkpoint", save_then_fill)
    result = runner.invoke(app, ["run", str(config_path), "--out", str(small_disk)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "no space left on the device of" in message and str(small_disk) in message
    assert "the plan needs about" in message and "runtime.keep: results" in message

    monkeypatch.undo()
    run_dir = small_disk / "runs" / reference.run_dir.name
    state = json.loads((run_dir / "checkpoints" / "last" / "state.json").read_text())
    assert state["loop"]["step"] == 6  # the last good checkpoint
    assert not [p for p in run_dir.rglob(".*") if p.name not in (".lock", ".lock.held")]
    assert all(p.read_bytes() == data for p, data in finished_files.items())
    if filler and filler[0] is not None:
        filler[0].unlink()
    resumed = run_experiment(tiny_config(seed=3, **settings), small_disk)
    assert "from step 6" in (resumed.run_dir / "run.log").read_text()
    assert _scores(resumed.results) == _scores(reference.results)


# -- xstilts clean and the dry run's estimate ----------------------------------------------


def test_clean_applies_a_retention_afterwards_and_leaves_what_runs_need(tiny_config, tmp_path):
    out = tmp_path / "out"
    done = run_experiment(tiny_config(intermediate=True, runtime__keep="all"), out)
    inter_dir = out / "intermediate" / done.results["intermediate_run"]
    # a run asked for more languages than it has scored keeps its model
    unfinished = run_experiment(tiny_config(seed=9, runtime__keep="all"), out)
    config = yaml.safe_load((unfinished.run_dir / "config.yaml").read_text())
    config["evaluation"]["languages"].append("es")
    (unfinished.run_dir / "config.yaml").write_text(yaml.safe_dump(config))

    dry = runner.invoke(app, ["clean", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would free" in dry.output and (done.run_dir / "best").is_dir()

    with RunLock(inter_dir):  # a running process holds it
        result = runner.invoke(app, ["clean", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped (in use" in result.output and "freed" in result.output
    assert (inter_dir / "checkpoints").is_dir()
    assert not (done.run_dir / "best").exists() and not (done.run_dir / "checkpoints").exists()
    assert (unfinished.run_dir / "best").is_dir()
    assert not (unfinished.run_dir / "checkpoints").exists()

    runner.invoke(app, ["clean", str(out)])
    assert not (inter_dir / "checkpoints").exists() and (inter_dir / "best").is_dir()


def _make_whole(best: Path, model: ModelConfig, tokenizer) -> dict[str, torch.Tensor]:
    """Turn a delta ``best/`` into what earlier versions wrote: the whole encoder and
    the tokenizer in ``best/encoder``, no delta files. Returns the encoder's state."""
    whole = build_encoder(model, tokenizer, best)
    for name in ("trained.safetensors", "base.json"):
        (best / name).unlink()
    whole.save_pretrained(best / "encoder")
    tokenizer.save_pretrained(best / "encoder")
    return {k: v.clone() for k, v in whole.state_dict().items()}


def test_clean_rewrites_a_whole_best_as_its_delta_bit_for_bit(tiny_config, tmp_path, tokenizer):
    out = tmp_path / "out"
    config = tiny_config(intermediate=True, runtime__keep="best")
    done = run_experiment(config, out)
    inter_best = out / "intermediate" / done.results["intermediate_run"] / "best"
    target_best = done.run_dir / "best"
    wholes = {b: _make_whole(b, config.model, tokenizer) for b in (inter_best, target_best)}
    whole_bytes = sum(retention.folder_bytes(best) for best in wholes)

    dry = runner.invoke(app, ["clean", str(out), "--keep", "best", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("whole encoder rewritten as its delta") == 2
    assert all((best / "encoder").is_dir() for best in wholes)

    result = runner.invoke(app, ["clean", str(out), "--keep", "best"])
    assert result.exit_code == 0, result.output
    assert result.output.count("whole encoder rewritten as its delta") == 2
    for best, state in wholes.items():
        assert not (best / "encoder").exists()
        base = json.loads((best / "base.json").read_text())
        assert base["layout"] == "encoder-delta" and "converted_from" in base
        saved = load_file(str(best / "trained.safetensors"))
        # the trained embeddings as their changed rows, the frozen parts not at all
        assert _WORDS + ":rows" in saved and 0 < len(saved[_WORDS + ":rows"]) < len(tokenizer)
        _same_bits(build_encoder(config.model, tokenizer, best).state_dict(), state)
    assert sum(retention.folder_bytes(best) for best in wholes) < whole_bytes / 2

    # the target run still evaluates a new language from its rewritten model
    more = config.model_copy(deep=True)
    more.evaluation.languages.append("es")
    again = run_experiment(more, out)
    assert again.run_dir == done.run_dir and "es" in again.results["languages"]
    before = _scores(done.results)
    assert {lang: _scores(again.results)[lang] for lang in before} == before


def test_a_whole_best_that_does_not_fit_its_config_is_kept_and_said(
    tiny_config, tmp_path, tokenizer
):
    out = tmp_path / "out"
    config = tiny_config(runtime__keep="best")
    done = run_experiment(config, out)
    best = done.run_dir / "best"
    _make_whole(best, config.model, tokenizer)
    saved = yaml.safe_load((done.run_dir / "config.yaml").read_text())
    saved["model"]["tiny"] = {"hidden_size": 48}
    (done.run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    result = runner.invoke(app, ["clean", str(out), "--keep", "best"])
    assert result.exit_code == 0, result.output
    assert "kept whole:" in result.output and "does not fit" in result.output
    assert (best / "encoder").is_dir() and not (best / "trained.safetensors").exists()


def test_only_a_best_holding_a_whole_encoder_alone_is_rewritten(tmp_path):
    best = tmp_path / "best"
    (best / "encoder").mkdir(parents=True)
    assert whole_best.is_whole_best(best)
    (best / "base.json").write_text(json.dumps({"layout": "encoder-delta"}))
    assert whole_best.is_whole_best(best)  # a conversion killed before encoder/ went
    (best / "base.json").write_text(json.dumps({"layout": "adapters"}))
    assert not whole_best.is_whole_best(best)  # its trained.safetensors is not a delta
    (best / "base.json").write_text("[]")
    assert not whole_best.is_whole_best(best)
    shutil.rmtree(best / "encoder")
    assert not whole_best.is_whole_best(best)


def test_dry_run_estimates_the_disk_from_parameter_counts(tmp_path):
    size = disk.model_size(ModelConfig(name="xlm-roberta-large"))
    assert size.total == size.trained == 558_840_832  # no pooler: heads are ours
    frozen = disk.model_size(ModelConfig(name="xlm-roberta-large", freeze_embeddings=True))
    assert frozen.trained == size.total - 256_531_456
    result = runner.invoke(
        app, ["run", "configs/studies/paper.yaml", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split()).split("estimated disk: ")[1]
    total = float(line.split(" GB")[0].replace(",", ""))
    # 60 intermediate best models of 1.47 GB (2.24 GB less the embedding rows no English
    # task touches: disk.CHANGED_EMBEDDING_ROWS), predictions, one run training
    assert 95 < total < 120 and "runtime.keep: results" in line
