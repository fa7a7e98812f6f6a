"""QA, tagging and retrieval end to end on the real samples shipped in resources/real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REAL_DATA
from xstilts.config import parse_config
from xstilts.experiment.pipeline import run_experiment
from xstilts.metrics.squad import squad_scores
from xstilts.metrics.tagging import seqeval_scores
from xstilts.tasks.readers import read_conllu, read_squad


def _config(data_dir: Path, cache: Path, target: dict, **extra) -> object:
    payload = {
        "model": {"tiny": {}},
        "target": target,
        "data": {"source": "local", "data_dir": str(data_dir), "cache_dir": str(cache)},
        **extra,
    }
    return parse_config(payload)


def test_xquad_trains_decodes_and_scores_real_files(tmp_path, feature_cache):
    data_dir = tmp_path / "data"
    (data_dir / "squad").mkdir(parents=True)
    # SQuAD v1.1 itself is not among the samples: the English XQuAD file stands in for it.
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        shutil.copy(REAL_DATA / "xquad" / "xquad.en.json", data_dir / "squad" / name)
    shutil.copytree(REAL_DATA / "xquad", data_dir / "xquad")
    config = _config(
        data_dir,
        feature_cache,
        {
            "task": "xquad",
            "training": {
                "learning_rate": 1e-3,
                "batch_size": 16,
                "epochs": 1,
                "max_length": 192,
                "max_train_examples": 160,
                "max_eval_examples": 48,
            },
        },
        evaluation={"languages": ["en", "de", "zh", "ar"], "max_examples": 60},
    )
    outcome = run_experiment(config, tmp_path / "runs")
    for lang in ("en", "de", "zh", "ar"):
        gold = {row["id"]: row for _, row in read_squad(REAL_DATA / "xquad" / f"xquad.{lang}.json")}
        path = outcome.results["languages"][lang]["predictions"]  # max 60: under evaluations/
        predicted = json.loads((outcome.run_dir / path).read_text(encoding="utf-8"))
        assert len(predicted) == 60
        for qid, answer in predicted.items():
            # answers are cut from the original context, never detokenised
            assert answer in gold[qid]["context"]
        ids = list(predicted)
        expected = squad_scores(
            [predicted[q] for q in ids], [[a["text"] for a in gold[q]["answers"]] for q in ids]
        )
        scores = outcome.results["languages"][lang]
        assert scores["f1"] == pytest.approx(expected["f1"], abs=1e-9)
        assert scores["exact_match"] == pytest.approx(expected["exact_match"], abs=1e-9)


UD_TASK = {
    "name": "ud_sample",
    "family": "syntax",
    "format": "tagging",
    "metric": "seqeval",
    "labels": [
        "ADJ",
        "ADP",
        "ADV",
        "AUX",
        "CCONJ",
        "DET",
        "INTJ",
        "NOUN",
        "NUM",
        "PART",
        "PRON",
        "PROPN",
        "PUNCT",
        "SCONJ",
        "SYM",
        "VERB",
        "X",
    ],
    "languages": ["en", "de"],
    "codes": {"en": "en_ewt", "de": "de_gsd"},
    "splits": {
        "train": {"local": {"path": "udpos/{code}-ud-dev.conllu"}},
        # checkpoint selection must not read the English test file: validate on German
        "validation": {"local": {"path": "udpos/de_gsd-ud-dev.conllu"}},
        "test": {"local": {"path": "udpos/{code}-ud-dev.conllu"}},
    },
}


def test_udpos_on_real_conllu_gives_every_word_one_tag(tmp_path, feature_cache):
    task_file = tmp_path / "ud.yaml"
    task_file.write_text(yaml.safe_dump(UD_TASK))
    config = _config(
        REAL_DATA,
        feature_cache,
        {
            "task": "ud_sample",
            "training": {
                "learning_rate": 1e-3,
                "batch_size": 32,
                "epochs": 1,
                "max_length": 24,  # long sentences are split into windows
                "max_train_examples": 400,
                "max_eval_examples": 80,
            },
        },
        data={
            "source": "local",
            "data_dir": str(REAL_DATA),
            "cache_dir": str(feature_cache),
            "task_files": [str(task_file)],
        },
    )
    outcome = run_experiment(config, tmp_path / "runs")
    for lang, treebank in (("en", "en_ewt"), ("de", "de_gsd")):
        sentences = [
            row for _, row in read_conllu(REAL_DATA / "udpos" / f"{treebank}-ud-dev.conllu")
        ]
        assert max(len(s["tokens"]) for s in sentences) > 24
        text = (outcome.run_dir / "predictions" / "ud_sample" / f"test-{lang}.tsv").read_text()
        predicted = [block.split("\n") for block in text.strip("\n").split("\n\n")]
        assert [len(p) for p in predicted] == [len(s["tokens"]) for s in sentences]
        assert {tag for p in predicted for tag in p} <= set(UD_TASK["labels"])
        expected = seqeval_scores(predicted, [s["tags"] for s in sentences])
        scores = outcome.results["languages"][lang]
        assert scores["f1"] == pytest.approx(expected["f1"], abs=1e-9)
        assert scores["token_accuracy"] == pytest.approx(expected["token_accuracy"], abs=1e-9)


def test_tatoeba_zero_shot_from_the_encoder(tmp_path, feature_cache, monkeypatch):
    from xstilts.experiment import pipeline

    monkeypatch.setattr(pipeline, "train_phase", lambda *a, **k: pytest.fail("no training"))
    languages = ["de", "fr", "zh", "ar", "hi"]
    config = _config(
        REAL_DATA, feature_cache, {"task": "tatoeba"}, evaluation={"languages": languages}
    )
    outcome = run_experiment(config, tmp_path / "runs")
    assert outcome.results["training"] is None
    assert outcome.results["validation_score"] is None  # Tatoeba has no dev split
    for lang in languages:
        lines = (outcome.run_dir / "predictions" / "tatoeba" / f"test-{lang}.tsv").read_text()
        indices = [int(line) for line in lines.split()]
        assert len(indices) == 1000 and all(0 <= i < 1000 for i in indices)
        correct = sum(i == position for position, i in enumerate(indices))
        assert outcome.results["languages"][lang]["accuracy"] == pytest.approx(correct / 10)
        assert "accuracy_en_to_xx" in outcome.results["languages"][lang]


def _write_bucc_split(folder: Path, split: str, offset: int, count: int, noise: int) -> None:
    """BUCC-style files from real German-English Tatoeba pairs plus unpaired sentences."""
    german = (REAL_DATA / "tatoeba" / "tatoeba.deu-eng.deu").read_text().splitlines()
    english = (REAL_DATA / "tatoeba" / "tatoeba.deu-eng.eng").read_text().splitlines()
    pairs = range(offset, offset + count)
    extra_de = range(offset + count, offset + count + noise)
    extra_en = range(offset + count + noise, offset + count + 2 * noise)
    src = [f"de-{split}-{i:06d}\t{german[i]}" for i in [*pairs, *extra_de]]
    tgt = [f"en-{split}-{i:06d}\t{english[i]}" for i in [*reversed(pairs), *extra_en]]
    gold = [f"de-{split}-{i:06d}\ten-{split}-{i:06d}" for i in pairs]
    for suffix, lines in (("de", src), ("en", tgt), ("gold", gold)):
        (folder / f"de-en.{split}.{suffix}").write_text("\n".join(lines) + "\n")


def test_bucc_threshold_is_chosen_on_dev_and_applied_to_test(tmp_path, feature_cache, monkeypatch):
    from xstilts.formats.retrieval import Retrieval
    from xstilts.metrics.retrieval import bucc_f1

    folder = tmp_path / "bucc2018"
    folder.mkdir()
    _write_bucc_split(folder, "dev", offset=0, count=120, noise=40)
    _write_bucc_split(folder, "test", offset=300, count=150, noise=60)

    calibrated_on: list[set[str]] = []
    real_calibrate = Retrieval.calibrate

    def spy(self, spec, examples, features, outputs):
        calibrated_on.append(set(examples["id"]))
        return real_calibrate(self, spec, examples, features, outputs)

    monkeypatch.setattr(Retrieval, "calibrate", spy)
    config = _config(
        tmp_path, feature_cache, {"task": "bucc2018"}, evaluation={"languages": ["de"]}
    )
    outcome = run_experiment(config, tmp_path / "runs")

    assert len(calibrated_on) == 1
    assert all(i.startswith(("de-dev-", "en-dev-")) for i in calibrated_on[0])
    scores = outcome.results["languages"]["de"]
    threshold = scores["calibration"]["threshold"]
    assert isinstance(threshold, float)
    lines = (outcome.run_dir / "predictions" / "bucc2018" / "test-de.tsv").read_text().split("\n")
    predicted = {tuple(line.split("\t")) for line in lines if line}
    assert all(s.startswith("de-test-") and t.startswith("en-test-") for s, t in predicted)
    gold_lines = (folder / "de-en.test.gold").read_text().splitlines()
    gold = {tuple(line.split("\t")) for line in gold_lines}
    expected = bucc_f1(predicted, gold)
    assert scores["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    # The run's validation score (what the report and export choose on) is dev F1.
    assert outcome.results["validation_score"] == scores["calibration"]["dev_f1"]
    assert "dev F1" in outcome.results["validation_from"]


def test_retrieval_after_an_intermediate_task_uses_its_encoder(tiny_config, tmp_path, monkeypatch):
    from xstilts.experiment import pipeline

    seen = []
    real_build = pipeline.build_encoder
    monkeypatch.setattr(
        pipeline,
        "build_encoder",
        lambda m, t, init_from=None: seen.append(init_from) or real_build(m, t, init_from),
    )
    config = tiny_config(
        intermediate=True,
        target__task="tatoeba",
        target__training={},
        evaluation__languages=["de", "fr"],
        evaluation__max_examples=None,
        data__data_dir=str(REAL_DATA),
    )
    outcome = run_experiment(config, tmp_path)
    inter_best = tmp_path / "intermediate" / outcome.results["intermediate_run"] / "best"
    assert seen == [None, inter_best]  # intermediate training, then retrieval from its encoder
    assert set(outcome.results["languages"]) == {"de", "fr"}
