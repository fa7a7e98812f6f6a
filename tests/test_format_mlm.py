"""The mlm format: BERT-style masking rates, special tokens and padding left alone,
deterministic evaluation masks, training masks from the global RNG, the pretrained
and tied head, loss and gradients, saving and reloading, scores and the text reader."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

from xstilts.config import ModelConfig, TinyModelConfig
from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.formats.mlm import IGNORE_INDEX, MaskedLM
from xstilts.inference import run_inference
from xstilts.metrics import get_metric
from xstilts.modeling import (
    HEADS_FILE,
    MultiTaskModel,
    build_encoder,
    load_heads,
    save_model,
)
from xstilts.tasks import TaskSpec
from xstilts.tasks.loading import load_split
from xstilts.tasks.readers import READERS, infer_file_format, read_text
from xstilts.tasks.registry import read_task_file
from xstilts.train.checkpoint import load_checkpoint, save_checkpoint

TINY = ModelConfig(tiny=TinyModelConfig())
SPEC = TaskSpec(name="mlm_wiki", family="mlm", format="mlm", metric="mlm_accuracy")
FMT = MaskedLM()
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "A short one.",
    "Masked language modelling predicts the hidden tokens of a sentence from the rest.",
    "Ein weiterer Satz, damit der Stapel verschieden lange Merkmale hat.",
]
EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "configs" / "tasks" / "mlm_example.yaml"


def tiny_model(tokenizer) -> MultiTaskModel:
    encoder = build_encoder(TINY, tokenizer)
    return MultiTaskModel(encoder, {"mlm_wiki": FMT.build_head(SPEC, encoder)}, {"mlm_wiki": FMT})


def encode(tokenizer, texts: list[str], *, training: bool, max_length: int = 64) -> dict:
    return FMT.encode(
        {"text": texts}, list(range(len(texts))), tokenizer=tokenizer, spec=SPEC,
        max_length=max_length, training=training,
    )  # fmt: skip


def synthetic(rows: int, *, eval_: bool, vocab: int = 1000, mask_id: int = 3) -> dict:
    """Features of random lengths: <s> ids... </s>, ids in [5, vocab)."""
    gen = torch.Generator().manual_seed(123)
    lengths = torch.randint(3, 60, (rows,), generator=gen).tolist()
    ids = [[0, *torch.randint(5, vocab, (n - 2,), generator=gen).tolist(), 2] for n in lengths]
    batch = {
        "input_ids": ids,
        "special_tokens_mask": [[1] + [0] * (len(s) - 2) + [1] for s in ids],
        "mask_token_id": [mask_id] * rows,
        "vocab_size": [vocab] * rows,
    }
    if eval_:
        batch["example_index"] = list(range(rows))
    return batch


def padded(values: list[list[int]], fill: int) -> torch.Tensor:
    longest = max(len(v) for v in values)
    return torch.tensor([v + [fill] * (longest - len(v)) for v in values])


# -- features and masking -------------------------------------------------------


def test_registered_and_encodes_without_attention_mask(tokenizer) -> None:
    assert get_format("mlm") is not None and isinstance(get_format("mlm"), MaskedLM)
    train = encode(tokenizer, SENTENCES, training=True)
    assert set(train) == {"input_ids", "special_tokens_mask", "mask_token_id", "vocab_size"}
    assert train["mask_token_id"] == [tokenizer.mask_token_id] * len(SENTENCES)
    assert train["vocab_size"] == [len(tokenizer)] * len(SENTENCES)
    for ids, special in zip(train["input_ids"], train["special_tokens_mask"], strict=True):
        assert len(ids) == len(special) and special[0] == special[-1] == 1
    evaluation = encode(tokenizer, SENTENCES, training=False, max_length=10)
    assert evaluation["example_index"] == list(range(len(SENTENCES)))
    assert max(len(ids) for ids in evaluation["input_ids"]) == 10


def test_masking_rates_follow_bert() -> None:
    batch = synthetic(6000, eval_=False)
    torch.manual_seed(0)
    collated = FMT.collate(batch, pad_token_id=1)
    original = padded(batch["input_ids"], 1)
    special = padded(batch["special_tokens_mask"], 1).bool()
    labels, inputs = collated["labels"], collated["input_ids"]
    chosen = labels != IGNORE_INDEX
    candidates = int((~special).sum())
    assert candidates > 150_000
    # 15% of the candidates (binomial sd ~0.0009): wrong rates (12%, 20%) fail.
    assert abs(int(chosen.sum()) / candidates - 0.15) < 0.004
    n = int(chosen.sum())
    to_mask = chosen & (inputs == 3)
    unchanged = chosen & (inputs == original)
    to_random = chosen & ~to_mask & ~unchanged
    assert abs(int(to_mask.sum()) / n - 0.8) < 0.015
    assert abs(int(to_random.sum()) / n - 0.1) < 0.012
    assert abs(int(unchanged.sum()) / n - 0.1) < 0.012
    # random replacements are spread over the vocabulary
    assert len(set(inputs[to_random].tolist())) > 500
    assert int(inputs[to_random].max()) < 1000
    # labels: the original ids where chosen, -100 elsewhere; nothing else changes
    assert torch.equal(labels[chosen], original[chosen])
    assert bool((labels[~chosen] == IGNORE_INDEX).all())
    assert torch.equal(inputs[~chosen], original[~chosen])
    # special tokens and padding are never chosen and never changed
    assert not bool(chosen[special].any())
    assert torch.equal(inputs[special], original[special])
    assert torch.equal(collated["attention_mask"], (original != 1).long() | ~special)


def test_padding_and_special_tokens_never_masked_in_real_features(tokenizer) -> None:
    batch = encode(tokenizer, SENTENCES * 50, training=True)
    torch.manual_seed(3)
    collated = FMT.collate(batch, tokenizer.pad_token_id)
    special = padded(batch["special_tokens_mask"], 1).bool()
    assert bool((collated["attention_mask"] == 0).any())  # there is padding
    assert not bool((collated["labels"] != IGNORE_INDEX)[special].any())
    assert bool((collated["input_ids"][collated["attention_mask"] == 0] == 1).all())
    assert set(collated) == {"input_ids", "attention_mask", "labels"}


def test_training_masks_come_from_the_global_rng() -> None:
    batch = synthetic(64, eval_=False)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = FMT.collate(batch, 1)
    second = FMT.collate(batch, 1)  # the RNG moved on: new masks (dynamic masking)
    torch.set_rng_state(state)
    again = FMT.collate(batch, 1)
    assert torch.equal(first["labels"], again["labels"])
    assert torch.equal(first["input_ids"], again["input_ids"])
    assert not torch.equal(first["labels"], second["labels"])


def test_evaluation_masks_are_deterministic_per_example() -> None:
    batch = synthetic(40, eval_=True)
    torch.manual_seed(1)
    first = FMT.collate(batch, 1)
    torch.manual_seed(2)  # the global RNG plays no part
    state = torch.get_rng_state()
    second = FMT.collate(batch, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first["labels"], second["labels"])
    assert torch.equal(first["input_ids"], second["input_ids"])
    # the same example masks the same way in another batch (other lengths, order)
    picked = [7, 3, 30]
    sub = {key: [values[i] for i in picked] for key, values in batch.items()}
    alone = FMT.collate(sub, 1)
    for row, i in enumerate(picked):
        n = len(batch["input_ids"][i])
        assert torch.equal(alone["labels"][row, :n], first["labels"][i, :n])
        assert torch.equal(alone["input_ids"][row, :n], first["input_ids"][i, :n])
    # and different examples get different masks
    assert len({tuple(r.tolist()) for r in (first["labels"] != IGNORE_INDEX)}) > 30
    assert "example_index" in first


# -- head, loss, saving --------------------------------------------------------


def save_pretrained_mlm(tokenizer, target: Path) -> XLMRobertaForMaskedLM:
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(5)
    model = XLMRobertaForMaskedLM(config)
    with torch.no_grad():  # make the head clearly not a fresh initialisation
        model.lm_head.bias.normal_()
        model.lm_head.layer_norm.weight.normal_()
    model.save_pretrained(target)
    return model


def test_head_uses_the_pretrained_weights_and_is_tied(tokenizer, tmp_path: Path) -> None:
    saved = save_pretrained_mlm(tokenizer, tmp_path / "pretrained")
    encoder = build_encoder(ModelConfig(name=str(tmp_path / "pretrained")), tokenizer)
    torch.manual_seed(99)  # a random head would differ
    head = FMT.build_head(SPEC, encoder)
    assert list(dict(head.named_children())) == ["lm_head"]
    expected = saved.lm_head.state_dict()
    for key, value in head.lm_head.state_dict().items():
        assert torch.equal(value, expected[key]), key
    embeddings = encoder.get_input_embeddings().weight
    assert head.lm_head.decoder.weight is embeddings
    assert torch.equal(embeddings, saved.roberta.embeddings.word_embeddings.weight)
    # the tiny encoder (no name) gets a random head of the same shape, also tied
    tiny = build_encoder(TINY, tokenizer)
    tiny_head = FMT.build_head(SPEC, tiny)
    assert tiny_head.lm_head.decoder.weight is tiny.get_input_embeddings().weight


def test_loss_is_finite_and_reaches_the_encoder(tokenizer) -> None:
    model = tiny_model(tokenizer)
    model.train()
    torch.manual_seed(0)
    batch = FMT.collate(encode(tokenizer, SENTENCES * 4, training=True), tokenizer.pad_token_id)
    outputs = model("mlm_wiki", batch)
    masked = int((batch["labels"] != IGNORE_INDEX).sum())
    assert masked > 0
    assert outputs["logits"].shape == (masked, len(tokenizer))  # masked positions only
    loss = FMT.loss(outputs, batch)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    layer = model.encoder.encoder.layer[0].attention.self.query.weight
    assert layer.grad is not None and float(layer.grad.abs().sum()) > 0
    assert float(model.encoder.get_input_embeddings().weight.grad.abs().sum()) > 0
    assert float(model.heads["mlm_wiki"].lm_head.dense.weight.grad.abs().sum()) > 0


def test_loss_of_a_batch_with_nothing_masked_is_zero(tokenizer) -> None:
    model = tiny_model(tokenizer)
    batch = FMT.collate(encode(tokenizer, ["Hi."], training=True), tokenizer.pad_token_id)
    batch["labels"].fill_(IGNORE_INDEX)
    loss = FMT.loss(model("mlm_wiki", batch), batch)
    assert float(loss.detach()) == 0.0
    loss.backward()


def eval_batch(tokenizer) -> dict:
    return FMT.collate(encode(tokenizer, SENTENCES, training=False), tokenizer.pad_token_id)


def test_save_and_reload_keeps_the_tied_head(tokenizer, tmp_path: Path) -> None:
    model = tiny_model(tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    save_model(model, tmp_path / "saved")
    stored = load_file(str(tmp_path / "saved" / HEADS_FILE))
    assert "mlm_wiki.lm_head.decoder.weight" not in stored  # lives in the encoder
    assert "mlm_wiki.lm_head.dense.weight" in stored

    encoder = build_encoder(TINY, tokenizer, init_from=tmp_path / "saved")
    reloaded = MultiTaskModel(
        encoder, {"mlm_wiki": FMT.build_head(SPEC, encoder)}, {"mlm_wiki": FMT}
    )
    load_heads(reloaded, tmp_path / "saved")
    head = reloaded.heads["mlm_wiki"]
    assert head.lm_head.decoder.weight is encoder.get_input_embeddings().weight
    before, after = model.state_dict(), reloaded.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    model.eval(), reloaded.eval()
    with torch.no_grad():
        batch = eval_batch(tokenizer)
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                model("mlm_wiki", batch).values(), reloaded("mlm_wiki", batch).values(), strict=True
            )
        )


def test_checkpoint_round_trip_keeps_the_tied_head(tokenizer, tmp_path: Path) -> None:
    def build() -> tuple:
        model = tiny_model(tokenizer)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, optimizer, scheduler

    model, optimizer, scheduler = build()
    torch.manual_seed(0)
    batch = FMT.collate(encode(tokenizer, SENTENCES, training=True), tokenizer.pad_token_id)
    FMT.loss(model("mlm_wiki", batch), batch).backward()
    optimizer.step()
    scheduler.step()
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, {"step": 1})

    torch.manual_seed(42)
    fresh, fresh_optimizer, fresh_scheduler = build()
    with torch.no_grad():
        fresh.heads["mlm_wiki"].lm_head.dense.weight.zero_()
    assert load_checkpoint(tmp_path / "ckpt", fresh, fresh_optimizer, fresh_scheduler) == {
        "step": 1
    }
    head = fresh.heads["mlm_wiki"]
    assert head.lm_head.decoder.weight is fresh.encoder.get_input_embeddings().weight
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


# -- predictions and scores ----------------------------------------------------


def test_eval_outputs_count_masked_and_correct_tokens(tokenizer) -> None:
    model = tiny_model(tokenizer)
    model.eval()
    batch = eval_batch(tokenizer)
    with torch.no_grad():
        outputs = model("mlm_wiki", batch)
        hidden = model.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        full = model.heads["mlm_wiki"](hidden)  # [batch, length, vocab], by hand
    assert set(outputs) == {"masked", "correct"}
    assert outputs["masked"].shape == (len(SENTENCES),)
    chosen = batch["labels"] != IGNORE_INDEX
    hits = (full.argmax(-1) == batch["labels"]) & chosen
    assert torch.equal(outputs["masked"], chosen.sum(1))
    assert torch.equal(outputs["correct"], hits.sum(1))


def test_predict_score_and_render_by_hand() -> None:
    examples = datasets.Dataset.from_list([{"text": t} for t in ("a b c", "d", "e f g h")])
    features = datasets.Dataset.from_dict({"example_index": [0, 1, 2]})
    outputs = [
        {"masked": torch.tensor(4.0).numpy(), "correct": torch.tensor(3.0).numpy()},
        {"masked": torch.tensor(0.0).numpy(), "correct": torch.tensor(0.0).numpy()},
        {"masked": torch.tensor(6.0).numpy(), "correct": torch.tensor(2.0).numpy()},
    ]
    predictions = FMT.predict(SPEC, examples, features, outputs)
    assert predictions == [
        {"masked": 4, "correct": 3},
        {"masked": 0, "correct": 0},
        {"masked": 6, "correct": 2},
    ]
    assert FMT.references(SPEC, examples) is not None
    assert FMT.score(SPEC, examples, predictions) == {"mlm_accuracy": 50.0}  # 5 of 10
    assert FMT.render_predictions(SPEC, examples, predictions) == "75.00\n-\n33.33\n"


def test_metric() -> None:
    metric = get_metric("mlm_accuracy")
    assert metric.main_key == "mlm_accuracy"
    assert metric.score([1, 2], [2, 2]) == {"mlm_accuracy": 75.0}
    with pytest.raises(ValueError, match="no masked tokens"):
        metric.score([0], [0])


def test_validation_end_to_end(tokenizer, tmp_path: Path) -> None:
    """Loaded text -> features -> run_inference -> predict -> score, stable across runs."""
    (tmp_path / "mlm").mkdir()
    (tmp_path / "mlm" / "de.valid.txt").write_text("\n".join(SENTENCES * 3) + "\n\n")
    spec = read_task_file(EXAMPLE_FILE)[0]
    loaded = load_split(
        spec, "validation", "de", fields=FMT.fields, check_row=FMT.check_row(spec),
        mode="local", data_dir=tmp_path,
    )  # fmt: skip
    examples = loaded.examples
    assert len(examples) == 3 * len(SENTENCES)
    features = examples.map(
        lambda batch, indices: FMT.encode(
            batch, indices, tokenizer=tokenizer, spec=spec, max_length=32
        ),
        batched=True, with_indices=True, remove_columns=examples.column_names,
    )  # fmt: skip
    model = tiny_model(tokenizer)
    scores = []
    for batch_size in (4, 7):
        outputs = run_inference(
            model, "mlm_wiki", FMT, features, batch_size=batch_size,
            pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"),
        )  # fmt: skip
        predictions = FMT.predict(spec, examples, features, outputs)
        scores.append(FMT.score(spec, examples, predictions))
    assert scores[0] == scores[1]
    assert 0.0 <= scores[0]["mlm_accuracy"] <= 100.0


def test_check_row_needs_text_and_the_mlm_metric() -> None:
    check = FMT.check_row(SPEC)
    assert check({"text": "hello"}) == {"text": "hello"}
    with pytest.raises(ValueError, match="must be text"):
        check({"text": 3})
    wrong = SPEC.model_copy(update={"metric": "accuracy"})
    with pytest.raises(XstiltsError, match="mlm_accuracy"):
        FMT.check_row(wrong)


# -- the text reader -----------------------------------------------------------


def test_text_reader(tmp_path: Path) -> None:
    path = tmp_path / "en.train.txt"
    path.write_bytes("first line\r\n\n   \nsecond\u2028still second\nlast".encode())
    assert infer_file_format(path) == "text"
    assert READERS["text"] is read_text
    assert list(read_text(path)) == [
        (1, {"text": "first line"}),
        (4, {"text": "second\u2028still second"}),
        (5, {"text": "last"}),
    ]
