"""Adversarial training in embedding space: each method does what its paper says, on a
tiny model; every method trains every format; runs resume bit-identically; configs,
grids and reports know about it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.kills import kill_after_checkpoint
from tests.task_fixtures import EVERY_FORMAT, every_format_data
from xstilts.cli import app
from xstilts.config import (
    AdversarialConfig,
    ExperimentConfig,
    ModelConfig,
    TinyModelConfig,
    parse_config,
)
from xstilts.errors import XstiltsError
from xstilts.experiment.pipeline import run_experiment, run_intermediate_phase
from xstilts.formats.classification import Classification
from xstilts.modeling import MultiTaskModel, build_encoder
from xstilts.report import write_report
from xstilts.tasks import TaskSpec
from xstilts.train import adversarial
from xstilts.train.adversarial import (
    FGM,
    PGD,
    R3F,
    SMART,
    EmbeddingPerturbation,
    FreeLB,
    MicroBatch,
    Objective,
    make_objective,
    row_norm,
)
from xstilts.train.sampling import TaskSampler

runner = CliRunner()
METHODS = ["fgm", "pgd", "freelb", "smart", "r3f"]
SPEC = TaskSpec(name="pairs", family="paraphrase", format="classification", labels=["0", "1"])
SENTENCES = [
    ("The dog sees the cat.", "The cat is seen by the dog."),
    ("Der Hund sieht die Katze im Park.", "Die Katze sieht den Hund."),
    ("Le chat dort.", "Le chien mange dans le jardin."),
]


# -- a classifier on the tiny encoder, and one micro-batch of it --------------------------


@pytest.fixture
def classifier(tokenizer) -> MultiTaskModel:
    torch.manual_seed(0)
    model = ModelConfig(tiny=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2))
    encoder = build_encoder(model, tokenizer)
    fmt = Classification()
    model = MultiTaskModel(encoder, {"pairs": fmt.build_head(SPEC, encoder)}, {"pairs": fmt})
    return model.eval()  # no dropout: two forward passes of the same input agree


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    encoded = tokenizer(
        [a for a, _ in SENTENCES], [b for _, b in SENTENCES], padding=True, return_tensors="pt"
    )
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "labels": torch.tensor([1, 0, 0]),
    }


def _micro(model: MultiTaskModel, tokenizer, seam: EmbeddingPerturbation, seed: int = 0):
    batch = _batch(tokenizer)
    fmt = model.formats["pairs"]
    return MicroBatch(
        forward=lambda: model("pairs", batch),
        forward_with=lambda other: other("pairs", batch),
        loss=lambda outputs: fmt.loss(outputs, batch),
        distributions=lambda outputs: fmt.distributions(outputs, batch),
        backward=lambda loss: loss.backward(),
        scale=1.0,
        seam=seam,
        generator=torch.Generator().manual_seed(seed),
    )


def _seam(model: MultiTaskModel, tokenizer) -> EmbeddingPerturbation:
    special = [i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id]
    return EmbeddingPerturbation(model.encoder.get_input_embeddings(), special)


def _gradients(model: MultiTaskModel, objective: Objective, tokenizer) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    objective.step(_micro(model, tokenizer, _seam(model, tokenizer)))
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class _Recorder:
    """Keeps a copy of every perturbation a method sets."""

    def __init__(self, monkeypatch) -> None:
        self.seen: list[list[torch.Tensor]] = []
        real = EmbeddingPerturbation.replace

        def replace(seam, deltas):
            real(seam, deltas)
            self.seen.append([d.detach().clone() for d in seam.deltas])

        monkeypatch.setattr(EmbeddingPerturbation, "replace", replace)


# -- the seam ------------------------------------------------------------------------------


def test_only_real_tokens_are_perturbed(classifier, tokenizer):
    seam = _seam(classifier, tokenizer)
    embedding = classifier.encoder.get_input_embeddings()
    ids = _batch(tokenizer)["input_ids"]
    clean = embedding(ids)
    with seam.active(lambda mask, shape: torch.ones(shape)):
        shifted = embedding(ids)
    changed = (shifted - clean).abs().sum(dim=-1) > 0
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert torch.equal(changed, ~special)
    assert special[:, 0].all() and (ids == tokenizer.pad_token_id).any()  # both kinds present


# -- each method as its paper says -------------------------------------------------------


def test_fgm_steps_epsilon_along_the_gradient(classifier, tokenizer, monkeypatch):
    recorder = _Recorder(monkeypatch)
    terms = FGM(epsilon=0.5).step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    (delta,) = recorder.seen[0]
    torch.testing.assert_close(row_norm(delta, "l2").flatten(), torch.full((3,), 0.5))
    assert terms["perturbation_norm"] == pytest.approx(0.5, abs=1e-5)
    assert terms["adversarial_loss"] > terms["loss"]  # uphill, to first order


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_stays_in_the_ball_and_ends_on_it(classifier, tokenizer, monkeypatch, norm):
    recorder = _Recorder(monkeypatch)
    pgd = PGD(epsilon=0.3, step_size=0.2, steps=4, norm=norm)
    terms = pgd.step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    assert len(recorder.seen) == 4
    for (delta,) in recorder.seen:
        assert (row_norm(delta, norm) <= 0.3 + 1e-6).all()
    (last,) = recorder.seen[-1]
    torch.testing.assert_close(row_norm(last, norm).flatten(), torch.full((3,), 0.3))
    # Trained on the loss at the last perturbation only: logged as that, not as 'loss'.
    assert set(terms) == {"adversarial_loss", "perturbation_norm"}
    assert PGD.trained_term == "adversarial_loss"


def test_pgd_linf_steps_are_sign_steps(classifier, tokenizer, monkeypatch):
    """Madry et al.: every real coordinate moves by step_size along sign(g), not by
    step_size * g / ||g||_inf (which moves only the largest coordinate that far)."""
    recorder = _Recorder(monkeypatch)
    seam = _seam(classifier, tokenizer)
    PGD(epsilon=1.0, step_size=0.01, steps=3, norm="linf").step(_micro(classifier, tokenizer, seam))
    real = ~torch.isin(_batch(tokenizer)["input_ids"], seam.special_ids)
    for (before,), (after,) in zip(recorder.seen, recorder.seen[1:], strict=False):
        moved = (after - before).abs()[real]
        full = (moved - 0.01).abs() < 1e-6
        # sign(g) is 0 where g is exactly 0; a start near the boundary is clamped to it
        clamped = after[real].abs() == 1.0
        assert (full | (moved == 0) | clamped).all()
        assert full[~clamped].float().mean() > 0.99
        assert (after - before)[~real].abs().max() == 0


def test_pgd_steps_along_the_sign_of_the_gradient(classifier, tokenizer):
    pgd = PGD(norm="linf")
    gradient = torch.tensor([[[0.5, -1e-3, 0.0, 2.0]]])
    assert torch.equal(pgd.direction(gradient), torch.tensor([[[1.0, -1.0, 0.0, 1.0]]]))


def test_freelb_with_one_pass_and_no_random_start_is_standard_training(classifier, tokenizer):
    standard = _gradients(classifier, Objective(), tokenizer)
    freelb = _gradients(classifier, FreeLB(1, 0.1, 0.0, 0.0, "l2"), tokenizer)
    for name, gradient in standard.items():
        torch.testing.assert_close(freelb[name], gradient, rtol=0, atol=0)


def test_freelb_second_pass_is_the_fgm_example(classifier, tokenizer):
    """Two passes, no random start, no ball: the second perturbation is FGM's, and the
    parameter gradient is the mean of FGM's clean and adversarial ones."""
    fgm = _gradients(classifier, FGM(epsilon=0.7), tokenizer)
    freelb = _gradients(classifier, FreeLB(2, 0.7, 0.0, 0.0, "l2"), tokenizer)
    for name, gradient in fgm.items():
        torch.testing.assert_close(freelb[name], gradient / 2, rtol=1e-5, atol=1e-7)


def test_freelb_random_start_and_projection(classifier, tokenizer, monkeypatch):
    recorder = _Recorder(monkeypatch)
    FreeLB(3, 1.0, 0.05, 0.2, "l2").step(
        _micro(classifier, tokenizer, _seam(classifier, tokenizer))
    )
    for (delta,) in recorder.seen:
        assert (row_norm(delta, "l2") <= 0.2 + 1e-6).all()


@pytest.mark.parametrize("dropout", ["fixed", "resample"])
def test_freelb_keeps_one_dropout_mask_across_its_passes(classifier, tokenizer, dropout):
    """Zhu et al.: the K passes share one dropout mask. With a zero perturbation (no
    random start, a zero step) the passes then give identical outputs; resampled
    dropout gives each pass its own."""
    classifier.train()
    micro = _micro(classifier, tokenizer, _seam(classifier, tokenizer))
    outputs = []
    forward = micro.forward
    micro.forward = lambda: outputs.append(forward()) or outputs[-1]
    FreeLB(steps=3, step_size=0.0, init_magnitude=0.0, dropout=dropout).step(micro)
    logits = [out["logits"].detach() for out in outputs]
    assert len(logits) == 3
    same = [torch.equal(logits[0], other) for other in logits[1:]]
    assert same == ([True, True] if dropout == "fixed" else [False, False])


@pytest.mark.parametrize(
    "make",
    [
        lambda sigma: SMART(weight=1.0, sigma=sigma, mu=0.0),
        lambda sigma: R3F(weight=1.0, sigma=sigma, noise="normal"),
        lambda sigma: R3F(weight=1.0, sigma=sigma, noise="uniform"),
    ],
)
def test_smoothness_regularisers_vanish_without_noise(classifier, tokenizer, make):
    micro = _micro(classifier, tokenizer, _seam(classifier, tokenizer))
    assert make(0.0).step(micro)["regulariser"] == pytest.approx(0.0, abs=1e-12)
    micro = _micro(classifier, tokenizer, _seam(classifier, tokenizer))
    assert make(1e-2).step(micro)["regulariser"] > 0.0


def test_smart_proximal_term_follows_a_momentum_teacher(classifier, tokenizer):
    smart = SMART(beta=0.5, beta_early=0.5)  # a constant momentum
    smart.attach(classifier, total_steps=10)
    first = smart.step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    assert first["proximal"] == pytest.approx(0.0, abs=1e-10)  # the teacher is a copy
    with torch.no_grad():
        for parameter in classifier.parameters():
            parameter.add_(0.1)
    smart.after_optimizer_step(classifier, update=1)
    teacher = dict(smart.teacher.named_parameters())
    for name, parameter in classifier.named_parameters():  # halfway: beta = 0.5
        torch.testing.assert_close(teacher[name], parameter - 0.05)
    later = smart.step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    assert later["proximal"] > 0


def test_smart_defaults_are_the_papers(classifier, tokenizer):
    """Jiang et al. 2020: sigma = epsilon = 1e-5, eta = 1e-3, one ascent step, mu = 1
    (the proximal term is on), beta 0.99 for the first 10% of updates then 0.999."""
    smart = make_objective(AdversarialConfig(method="smart"))
    assert isinstance(smart, SMART)
    assert (smart.sigma, smart.epsilon, smart.step_size, smart.steps) == (1e-5, 1e-5, 1e-3, 1)
    assert (smart.mu, smart.normalise, smart.precision) == (1.0, "token", "float32")
    smart.attach(classifier, total_steps=10)
    terms = smart.step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    assert "proximal" in terms and smart.teacher is not None


def test_smart_momentum_follows_the_papers_schedule(classifier):
    smart = SMART()
    smart.attach(classifier, total_steps=30)  # 10%: the first 3 updates
    assert [smart.beta_at(t) for t in (1, 2, 3, 4, 30)] == [0.99, 0.99, 0.99, 0.999, 0.999]
    for update, beta in ((3, 0.99), (4, 0.999)):
        with torch.no_grad():
            for mine, theirs in zip(
                smart.teacher.parameters(), classifier.parameters(), strict=True
            ):
                mine.copy_(theirs + 1.0)  # the teacher 1 away from the model
        smart.after_optimizer_step(classifier, update)
        for mine, theirs in zip(smart.teacher.parameters(), classifier.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs + beta)


@pytest.mark.parametrize("epsilon", [1e-5, 0.0])
def test_smart_perturbation_stays_in_the_epsilon_ball(classifier, tokenizer, monkeypatch, epsilon):
    """Algorithm 1 projects each ascent step onto the L-inf ball of radius epsilon;
    epsilon 0 switches the projection off (the reference code's behaviour)."""
    recorder = _Recorder(monkeypatch)
    smart = SMART(sigma=1e-5, epsilon=epsilon, step_size=1e-3, steps=3, mu=0.0)
    smart.step(_micro(classifier, tokenizer, _seam(classifier, tokenizer)))
    assert len(recorder.seen) == 3
    largest = max(delta.abs().max().item() for (delta,) in recorder.seen)
    if epsilon > 0:
        assert largest <= epsilon * (1 + 1e-6)
        assert largest == pytest.approx(epsilon)  # the ascent reaches the boundary
    else:
        assert largest > 2e-5  # unprojected, three steps leave the 1e-5 ball


@pytest.mark.parametrize("normalise", ["token", "example"])
def test_smart_normalises_the_ascent_per_token_or_per_example(normalise):
    """The reference code divides the gradient by its L-inf norm over each token's
    hidden vector: every token's largest coordinate then moves a full step. Per
    example, only the example's largest coordinate does."""
    gradient = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    direction = SMART(normalise=normalise).direction(gradient)
    per_token = direction.abs().amax(dim=-1)  # [examples, tokens]
    full = (per_token - 1).abs() < 1e-5
    if normalise == "token":
        assert full.all()
    else:
        assert full.sum(dim=1).tolist() == [1, 1, 1]
    torch.testing.assert_close(direction.sign(), gradient.sign())  # ascent, rescaled


# -- precision -------------------------------------------------------------------------


def _first_matmul_inputs(model: MultiTaskModel) -> tuple[list[torch.Tensor], object]:
    """What the first attention matmul of each forward pass receives: its input in the
    dtype autocast (when on) computes it in."""
    seen: list[torch.Tensor] = []

    def record(module, args):
        (states,) = args
        if torch.is_autocast_enabled("cpu"):
            states = states.to(torch.get_autocast_dtype("cpu"))
        seen.append(states.detach().float().clone())

    query = model.encoder.encoder.layer[0].attention.self.query
    return seen, query.register_forward_pre_hook(record)


def _regularised(model, tokenizer, objective, autocast: bool):
    """(regulariser, applied perturbation at the first matmul) of one step."""
    seen, handle = _first_matmul_inputs(model)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        terms = objective.step(_micro(model, tokenizer, _seam(model, tokenizer), seed=5))
    handle.remove()
    return terms["regulariser"].item(), (seen[-1] - seen[0]).flatten()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()


@pytest.mark.parametrize(
    "make",
    [
        lambda precision: R3F(sigma=1e-5, precision=precision),
        lambda precision: SMART(sigma=1e-5, mu=0.0, precision=precision),
    ],
    ids=["r3f", "smart"],
)
def test_a_configured_sigma_is_the_sigma_applied_under_bf16_autocast(classifier, tokenizer, make):
    """Under bf16 autocast a 1e-5 perturbation is below the activations' resolution. In
    float32 (the default) the perturbation the first matmul sees is the float32 run's
    (correlation > 0.99) and the regulariser is its float32 value (relative 1e-6); the
    run's autocast instead rounds the perturbation away."""
    reference, intended = _regularised(classifier, tokenizer, make("float32"), autocast=False)
    assert reference > 0 and intended.abs().max() > 0
    value, applied = _regularised(classifier, tokenizer, make("float32"), autocast=True)
    assert _correlation(applied, intended) > 0.99
    assert value == pytest.approx(reference, rel=1e-6, abs=0)

    value, applied = _regularised(classifier, tokenizer, make("autocast"), autocast=True)
    rounded = applied.abs().max() == 0 or _correlation(applied, intended) < 0.5
    assert rounded and abs(value - reference) > 0.5 * reference


# -- configuration -------------------------------------------------------------------------


def test_options_of_another_method_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("target: {task: xnli, training: {adversarial: {method: fgm, steps: 3}}}\n")
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "target.training.adversarial" in message and "its options: epsilon" in message


def test_resolved_options_are_written_and_change_the_run(tiny_config):
    from xstilts.experiment.resolve import resolve

    plain = resolve(tiny_config())
    freelb = resolve(tiny_config(target__training__adversarial={"method": "freelb", "steps": 2}))
    assert plain.run_name != freelb.run_name
    written = yaml.safe_load(freelb.config.to_yaml())["target"]["training"]["adversarial"]
    assert written == {
        "method": "freelb",
        "steps": 2,
        "step_size": 0.1,
        "init_magnitude": 0.1,
        "epsilon": 0.0,
        "norm": "l2",
        "dropout": "fixed",
        "precision": "float32",
    }


def test_older_smart_settings_still_read():
    """A resolved config written before the schedule (beta 0.99, mu 0) reads as what it
    meant: a constant momentum, no proximal term."""
    old = AdversarialConfig.model_validate(
        {"method": "smart", "lambda": 1.0, "sigma": 1e-5, "step_size": 1e-3, "steps": 1,
         "beta": 0.99, "mu": 0.0}
    )  # fmt: skip
    assert (old.beta, old.beta_early, old.mu) == (0.99, 0.99, 0.0)


def test_tasks_of_a_multitask_phase_choose_their_own_method(tiny_config, tmp_path):
    config = tiny_config(
        intermediate=True,
        intermediate__tasks=["demo_nli", "demo_paraphrase"],
        intermediate__training={"max_steps": 4, "batch_size": 8, "adversarial": {"method": "r3f"}},
        intermediate__task_settings={"demo_paraphrase": {"adversarial": {"method": "none"}}},
        target__training__max_steps=2,
    )
    outcome = run_experiment(config, tmp_path)
    assert outcome.results["adversarial"] == "intermediate:demo_nli=r3f"


# -- every method, every format ------------------------------------------------------------


def _every_format_config(
    tmp_path: Path, task_files: list[Path], feature_cache: Path, adversarial: dict, steps: int
) -> ExperimentConfig:
    training = {
        "learning_rate": 1e-3,
        "batch_size": 4,
        "max_steps": steps,
        "max_length": 128,
        "max_train_examples": 24,
        "max_eval_examples": 12,
        "adversarial": adversarial,
    }
    return parse_config(
        {
            "seed": 4,
            "model": {"tiny": {}},
            "intermediate": {
                "tasks": EVERY_FORMAT,
                "sampler": {"strategy": "uniform"},
                "training": training,
            },
            "target": {"task": "demo_paraphrase"},
            "data": {
                "source": "local",
                "data_dir": str(tmp_path),
                "task_files": [str(path) for path in task_files],
                "cache_dir": str(feature_cache),
            },
        }
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_every_format(method, tmp_path, stand_ins, demo_data, feature_cache):
    sampler = TaskSampler([1.0] * len(EVERY_FORMAT), 4)
    steps = next(n for n in range(6, 200) if len({sampler.task_for_step(s) for s in range(n)}) == 6)
    task_files = every_format_data(tmp_path, stand_ins, demo_data)
    adversarial = {"method": method}
    config = _every_format_config(tmp_path, task_files, feature_cache, adversarial, steps)
    folder = run_intermediate_phase(config, tmp_path / "runs")
    training = json.loads((folder / "training.json").read_text())
    assert training["steps"] == steps and training["skipped_steps"] == []
    for entry in training["train_loss"]:
        assert all(math.isfinite(value) for value in entry.values()), entry
        assert entry["perturbation_norm"] > 0
    assert set(training["validation"][-1]["tasks"]) == set(EVERY_FORMAT)


# -- kill and resume ---------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_a_resumed_adversarial_run_ends_identically(method, tiny_config, tmp_path, monkeypatch):
    # SMART with its defaults (proximal term and momentum teacher on); its momentum
    # switches after update 6 (0.7 x 9), so the resumed run must switch it itself.
    adversarial = {"method": method, **({"beta_early_fraction": 0.7} if method == "smart" else {})}
    config = tiny_config(
        target__training__adversarial=adversarial,
        target__training__checkpoint_every_steps=3,
        target__training__max_steps=9,
    )
    reference = run_experiment(config, tmp_path / "uninterrupted")
    kill_after_checkpoint(monkeypatch, lambda: run_experiment(config, tmp_path / "interrupted"), 6)
    resumed = run_experiment(config, tmp_path / "interrupted")

    def training(outcome):
        return json.loads((outcome.run_dir / "training.json").read_text())

    assert training(resumed)["train_loss"] == training(reference)["train_loss"]
    for lang, scores in reference.results["languages"].items():
        assert resumed.results["languages"][lang]["accuracy"] == scores["accuracy"]


@pytest.mark.parametrize("method", ["fgm", "freelb", "smart"])
def test_methods_train_under_bf16_autocast(method, tiny_config, tmp_path):
    config = tiny_config(
        target__training__adversarial={"method": method},
        target__training__max_steps=3,
        runtime__mixed_precision="bf16",
        runtime__cpu=True,
    )
    training = json.loads((run_experiment(config, tmp_path).run_dir / "training.json").read_text())
    assert training["skipped_steps"] == []
    assert all(math.isfinite(v) for entry in training["train_loss"] for v in entry.values())


def test_random_starts_come_from_the_step_not_the_global_generator():
    first = adversarial.step_generator(7, 12, 0)
    torch.manual_seed(123)
    again = adversarial.step_generator(7, 12, 0)
    assert torch.equal(torch.rand(5, generator=first), torch.rand(5, generator=again))
    other = adversarial.step_generator(7, 13, 0)
    assert not torch.equal(
        torch.rand(5, generator=adversarial.step_generator(7, 12, 0)),
        torch.rand(5, generator=other),
    )


# -- reports -----------------------------------------------------------------------------


def _results(grid: Path, option: str, adversarial: str, seed: int, bonus: float) -> None:
    run_dir = grid / "runs" / f"{option}-xnli-s{seed}"
    run_dir.mkdir(parents=True)
    languages = {
        lang: {"accuracy": base + bonus + seed}
        for lang, base in (("en", 80.0), ("de", 70.0), ("fr", 72.0))
    }
    payload = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "seed": seed,
        "intermediate_option": option,
        "intermediate_tasks": ["mnli"],
        "adversarial": adversarial,
        "target_task": "xnli",
        "metric": "accuracy",
        "languages": languages,
        "finished_at": "2026-01-01T00:00:00+00:00",
    }
    (run_dir / "results.json").write_text(json.dumps(payload))


def test_the_report_compares_each_adversarial_option_with_its_standard_one(tmp_path):
    grid = tmp_path / "grid"
    for seed in (1, 2, 3, 4, 5):  # five runs a side: the exact test can reach 2/252
        _results(grid, "mnli", "", seed, 0.0)
        _results(grid, "mnli+freelb", "intermediate:freelb", seed, 6.0)
    write_report(grid, tmp_path / "report")
    rows = list(csv_rows(tmp_path / "report" / "adversarial.csv"))
    by_language = {row["language"]: row for row in rows}
    assert {row["option"] for row in rows} == {"mnli+freelb"}
    assert {row["standard"] for row in rows} == {"mnli"}
    for lang in ("en", "de", "fr", "non-English"):
        assert float(by_language[lang]["diff"]) == pytest.approx(6.0)
    # one non-English mean per run, 5 against 5, unpaired (different intermediate runs)
    assert float(by_language["non-English"]["p_value"]) == pytest.approx(2 / 252)
    assert by_language["non-English"]["paired"] == "False"
    assert (
        "Adversarial training against standard training"
        in (tmp_path / "report" / "tables.md").read_text()
    )


def csv_rows(path: Path):
    import csv

    with path.open(encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def test_unknown_method_is_a_config_error():
    with pytest.raises(XstiltsError, match=r"adversarial\.method"):
        parse_config({"target": {"task": "xnli", "training": {"adversarial": {"method": "vat"}}}})


def test_grid_variants_share_what_they_can_and_are_compared(tmp_path, demo_data_section):
    nli = {"tasks": ["demo_nli"], "training": {"max_steps": 3, "batch_size": 8}}
    freelb = {**nli, "training": {**nli["training"], "adversarial": {"method": "freelb"}}}
    grid = {
        "grid": {
            "seeds": [1, 2],
            "intermediate": {"nli": nli, "nli+freelb": freelb, "nli+target-fgm": nli},
            "targets": ["demo_paraphrase"],
            "option_settings": {
                "nli+target-fgm": {"target": {"training": {"adversarial": {"method": "fgm"}}}}
            },
        },
        "base": {
            "model": {"tiny": {}},
            "target": {"training": {"max_steps": 3, "batch_size": 8}},
            "evaluation": {"languages": ["en", "de", "fr", "es"], "max_examples": 20},
            "data": demo_data_section,
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list((out / "intermediate").iterdir())) == 4  # nli (shared) and nli+freelb, x2
    write_report(out, tmp_path / "report")
    rows = list(csv_rows(tmp_path / "report" / "adversarial.csv"))
    assert {(r["option"], r["standard"]) for r in rows} == {
        ("nli+freelb", "nli"),
        ("nli+target-fgm", "nli"),
    }
    zero_shot = {r["option"]: r for r in rows if r["language"] == "non-English"}
    assert len(zero_shot) == 2 and all(r["p_value"] for r in zero_shot.values())
    # target-only FGM starts from the same intermediate runs as standard: paired by them
    assert zero_shot["nli+target-fgm"]["paired"] == "True"
    assert zero_shot["nli+freelb"]["paired"] == "False"
