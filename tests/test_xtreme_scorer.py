"""The XTREME / XTREME-R benchmark scorer against hand values and the official logic."""

from __future__ import annotations

import collections
import json
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.metrics import precision_score as seqeval_precision
from seqeval.metrics import recall_score as seqeval_recall

from tests.official_oracles import mlqa_evaluate, squad_evaluate
from xstilts.errors import XstiltsError
from xstilts.metrics.classification import accuracy
from xstilts.metrics.retrieval import mean_average_precision_at_k
from xstilts.metrics.submission import read_json, read_lines, read_tag_sentences, submission_file
from xstilts.metrics.xtreme import (
    BENCHMARKS,
    LAREQA_LANGUAGES,
    aggregate,
    dump_scores,
    find_tasks,
    format_report,
    score_folders,
)

# seqeval warns when a random language has no entity at all; the scores are still defined.
pytestmark = pytest.mark.filterwarnings("ignore:.*ill-defined")

# ======================================================================================
# REFERENCE ORACLE: a transcription of the official scorer, used only to cross-check
# the implementation under test. Sources (google-research/xtreme):
#   evaluate.py at commit 838c13b69daafb9328785d16caae2711e4012123 (XTREME + XTREME-R),
#   third_party/evaluate_squad.py and third_party/evaluate_mlqa.py: the shared
#   transcriptions in tests/official_oracles.py (squad_evaluate, mlqa_evaluate),
#   third_party/utils_mewslix.py at commit 66367fa (evaluate, mean_reciprocal_rank).
# Logic is kept step for step, including its quirks; only files are opened as UTF-8 and
# print/exit side effects are left out.
# ======================================================================================


def _o_mean_reciprocal_rank(golds, predictions):
    def _reciprocal_rank(labels):
        for rank, label in enumerate(labels, start=1):
            if label:
                return 1.0 / rank
        return 0.0

    assert len(golds) == len(predictions)
    reciprocal_ranks = []
    for gold, prediction_list in zip(golds, predictions, strict=True):
        labels = [int(p == gold) for p in prediction_list]
        reciprocal_ranks.append(_reciprocal_rank(labels))
    if reciprocal_ranks:
        return sum(reciprocal_ranks) / len(reciprocal_ranks)
    return 0.0


def _o_mewslix_eval(gold_data, predictions, k=20):
    gold_single_labels = {ex_id: labels[0].strip() for ex_id, labels in gold_data.items()}
    gold_ids, pred_ids = [], []
    for example_id, gold in gold_single_labels.items():
        gold_ids.append(gold)
        pred_ids.append(predictions.get(example_id, [])[:k])
    return _o_mean_reciprocal_rank(golds=gold_ids, predictions=pred_ids)


# -- evaluate.py ----------------------------------------------------------------------


def _o_read_tag(file):
    labels = []
    example = []
    with open(file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                example.append(line)
            else:
                labels.append(example)
                example = []
    if example:
        labels.append(example)
    return labels


def _o_read_label(file):
    with open(file, encoding="utf-8") as f:
        return [line.strip() for line in f]


def _o_read_squad(file):
    with open(file, encoding="utf-8") as dataset_file:
        dataset_json = json.load(dataset_file)
        if "data" in dataset_json:
            return dataset_json["data"]
        return dataset_json


def _o_read_xcopa(file):
    labels = []
    with open(file, encoding="utf-8") as f:
        for row in f:
            labels.append(json.loads(row)["label"])
    return labels


def _o_f1(labels, predictions, language=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1_val = seqeval_f1(labels, predictions)
        prec = seqeval_precision(labels, predictions)
        rec = seqeval_recall(labels, predictions)
    return {"f1": f1_val * 100, "precision": prec * 100, "recall": rec * 100}


def _o_accuracy(labels, predictions, language=None):
    correct = sum([int(p == lab) for p, lab in zip(predictions, labels, strict=False)])
    return {"accuracy": float(correct) / len(predictions) * 100}


def _o_bucc_f1(labels, predictions, language=None):
    labels = {tuple(line.split("\t")) for line in labels}
    predictions = {tuple(line.split("\t")) for line in predictions}
    ncorrect = len(labels.intersection(predictions))
    if ncorrect > 0:
        prec = ncorrect / len(predictions)
        rec = ncorrect / len(labels)
        f1_val = 2 * prec * rec / (prec + rec)
    else:
        prec = rec = f1_val = 0
    return {"f1": f1_val * 100, "precision": prec * 100, "recall": rec * 100}


def _o_squad_em_f1(labels, predictions, language=None):
    return squad_evaluate(labels, predictions)


def _o_mlqa_em_f1(labels, predictions, language):
    return mlqa_evaluate(labels, predictions, language)


def _o_mewslix_map20(labels, predictions, language=None):
    return {"map@20": _o_mewslix_eval(labels, predictions, k=20) * 100}


def _o_split(codes):
    """The official lists are written as comma-separated strings split on ","."""
    return codes.split(",")


O_XTREME_GROUP2TASK = {
    "classification": ["pawsx", "xnli"],
    "tagging": ["udpos", "panx"],
    "qa": ["xquad", "mlqa", "tydiqa"],
    "retrieval": ["bucc2018", "tatoeba"],
}
O_XTREME_R_GROUP2TASK = {
    "classification": ["xnli", "xcopa"],
    "tagging": ["udpos", "panx"],
    "qa": ["xquad", "mlqa", "tydiqa"],
    "retrieval": ["tatoeba", "mewslix"],
    "multi_choice": ["xcopa"],
}
O_XTREME_VERSIONS_GROUP_DICT = {"xtreme": O_XTREME_GROUP2TASK, "xtreme-r": O_XTREME_R_GROUP2TASK}
O_XTREME_TASK2LANGS = {
    "pawsx": _o_split("de,en,es,fr,ja,ko,zh"),
    "xnli": _o_split("ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh"),
    "panx": _o_split(
        "ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,"
        "it,pt,es,bg,ru,ja,ka,ko,th,sw,yo,my,zh,kk,tr,et,fi,hu"
    ),
    "udpos": _o_split(
        "af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,"
        "nl,pt,ru,ta,te,th,tl,tr,ur,vi,yo,zh"
    ),
    "bucc2018": _o_split("de,fr,ru,zh"),
    "tatoeba": _o_split(
        "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,"
        "pt,es,bg,ru,ja,ka,ko,th,sw,zh,kk,tr,et,fi,hu"
    ),
    "xquad": _o_split("en,es,de,el,ru,tr,ar,vi,th,zh,hi"),
    "mlqa": _o_split("en,es,de,ar,hi,vi,zh"),
    "tydiqa": _o_split("en,ar,bn,fi,id,ko,ru,sw,te"),
}
O_XTREME_R_TASK2LANGS = {
    "xnli": _o_split("ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh"),
    "panx": _o_split(
        "ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,"
        "it,pt,es,bg,ru,ja,ka,ko,th,sw,yo,my,zh,kk,tr,et,fi,hu,qu,pl,uk,az,"
        "lt,pa,gu,ro"
    ),
    "udpos": _o_split(
        "af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,"
        "nl,pt,ru,ta,te,th,tl,tr,ur,vi,yo,zh,lt,pl,uk,wo,ro"
    ),
    "tatoeba": _o_split(
        "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,"
        "pt,es,bg,ru,ja,ka,ko,th,sw,zh,kk,tr,et,fi,hu,az,lt,pl,uk,"
        "ro"
    ),
    "xcopa": _o_split("et,ht,id,it,qu,sw,ta,th,tr,vi,zh"),
    "lareqa": [],
    "mewslix": _o_split("ar,de,en,es,fa,ja,pl,ro,ta,tr,uk"),
    "xquad": _o_split("en,es,de,el,ru,tr,ar,vi,th,zh,hi,ro"),
    "mlqa": _o_split("en,es,de,ar,hi,vi,zh"),
    "tydiqa": _o_split("en,ar,bn,fi,id,ko,ru,sw,te"),
}
O_XTREME_VERSIONS_LANG_DICT = {"xtreme": O_XTREME_TASK2LANGS, "xtreme-r": O_XTREME_R_TASK2LANGS}
O_READER_FUNCTION = {
    "pawsx": _o_read_label,
    "xnli": _o_read_label,
    "panx": _o_read_tag,
    "udpos": _o_read_tag,
    "bucc2018": _o_read_label,
    "tatoeba": _o_read_label,
    "xquad": _o_read_squad,
    "mewslix": _o_read_squad,
    "mlqa": _o_read_squad,
    "tydiqa": _o_read_squad,
    "xcopa": _o_read_xcopa,
}
O_METRIC_FUNCTION = {
    "pawsx": _o_accuracy,
    "xnli": _o_accuracy,
    "panx": _o_f1,
    "udpos": _o_f1,
    "bucc2018": _o_bucc_f1,
    "tatoeba": _o_accuracy,
    "xquad": _o_squad_em_f1,
    "mewslix": _o_mewslix_map20,
    "mlqa": _o_mlqa_em_f1,
    "tydiqa": _o_squad_em_f1,
    "xcopa": _o_accuracy,
}


def _o_evaluate_one_task(prediction_file, label_file, task, language=None):
    predictions = O_READER_FUNCTION[task](prediction_file)
    labels = O_READER_FUNCTION[task](label_file)
    if task not in ["bucc2018", "mewslix", "mlqa", "tydiqa", "xquad"]:
        assert len(predictions) == len(labels), "Number of examples not matched"
    return O_METRIC_FUNCTION[task](labels, predictions, language)


def _o_get_suffix(task, group2task):
    if task in group2task["qa"] or task in ("mewslix",):
        return "json"
    elif "multi_choice" in group2task and task in group2task["multi_choice"]:
        return "jsonl"
    return "tsv"


def official_evaluate(prediction_folder, label_folder, xtreme_version):
    prediction_tasks = next(os.walk(prediction_folder))[1]
    label_tasks = next(os.walk(label_folder))[1]
    group2task = O_XTREME_VERSIONS_GROUP_DICT[xtreme_version]
    task2langs = O_XTREME_VERSIONS_LANG_DICT[xtreme_version]
    detailed_scores = {}
    for task, langs in task2langs.items():
        if task in prediction_tasks and task in label_tasks:
            suffix = _o_get_suffix(task, group2task)
            score = collections.defaultdict(dict)
            for lg in langs:
                prediction_file = os.path.join(prediction_folder, task, f"test-{lg}.{suffix}")
                label_file = os.path.join(label_folder, task, f"test-{lg}.{suffix}")
                for file_path in [prediction_file, label_file]:
                    if not os.path.exists(file_path):
                        raise FileNotFoundError(f"{file_path} is not available.")
                score_lg = _o_evaluate_one_task(prediction_file, label_file, task, language=lg)
                for metric in score_lg:
                    score[metric][lg] = score_lg[metric]
            avg_score = {}
            for m in score:
                avg_score[f"avg_{m}"] = sum(score[m].values()) / len(score[m])
            score.update(avg_score)
            if task in group2task["qa"]:
                score["avg_metric"] = (score["avg_exact_match"] + score["avg_f1"]) / 2
            elif "avg_f1" in score:
                score["avg_metric"] = score["avg_f1"]
            elif "avg_accuracy" in score:
                score["avg_metric"] = score["avg_accuracy"]
            elif "avg_map@20" in score:
                score["avg_metric"] = score["avg_map@20"]
            detailed_scores[task] = dict(score)
    overall_scores = {}
    all_tasks = set(task2langs.keys())
    available_tasks = set(detailed_scores.keys())
    if all_tasks == available_tasks:
        overall_scores["all_task"] = sum(
            detailed_scores[task]["avg_metric"] for task in all_tasks
        ) / len(all_tasks)
    for group, group_tasks in group2task.items():
        if not set(group_tasks) - available_tasks:
            overall_scores[group] = sum(
                detailed_scores[task]["avg_metric"] for task in group_tasks
            ) / len(group_tasks)
    return overall_scores, detailed_scores


def official_output(prediction_folder, label_folder, xtreme_version):
    """What the official ``__main__`` writes: group scores updated with task blocks."""
    group_scores, detailed_scores = official_evaluate(
        str(prediction_folder), str(label_folder), xtreme_version
    )
    group_scores.update(detailed_scores)
    return group_scores


# ======================================================================================
# End of the oracle.
# ======================================================================================


def assert_same_structure_and_values(ours: Any, theirs: Any, where: str = "") -> None:
    """Same keys in the same order at every level, numbers equal to 1e-6."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"keys differ at {where or 'top'}"
        for key in theirs:
            assert_same_structure_and_values(ours[key], theirs[key], f"{where}/{key}")
    else:
        assert ours == pytest.approx(theirs, abs=1e-6), where


# -- writing folders in the submission layout --------------------------------------------


def suffix_of(task: str) -> str:
    if task in ("xquad", "mlqa", "tydiqa", "mewslix", "lareqa"):
        return "json"
    return "jsonl" if task == "xcopa" else "tsv"


def task_file(root: Path, task: str, lang: str) -> Path:
    path = root / task / f"test-{lang}.{suffix_of(task)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_lines(path: Path, lines: list[str], *, trailing_blank: bool = False) -> None:
    path.write_text("".join(f"{line}\n" for line in lines) + ("\n" if trailing_blank else ""))


def write_tags(path: Path, sentences: list[list[str]], *, extra_blank: bool = False) -> None:
    text = "".join("".join(f"{tag}\n" for tag in sentence) + "\n" for sentence in sentences)
    path.write_text(text + ("\n" if extra_blank else ""), encoding="utf-8")


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def squad_file(questions: list[tuple[str, list[str]]]) -> dict:
    """A SQuAD v1.1 dataset with one article per two questions."""
    articles = []
    for start in range(0, len(questions), 2):
        qas = [
            {
                "id": qid,
                "question": f"question {qid}?",
                "answers": [{"text": text, "answer_start": 0} for text in answers],
            }
            for qid, answers in questions[start : start + 2]
        ]
        articles.append({"title": f"t{start}", "paragraphs": [{"context": "ctx", "qas": qas}]})
    return {"version": "1.1", "data": articles}


# -- hand-computed folders ---------------------------------------------------------------

XNLI_GOLD = ["entailment", "neutral", "contradiction", "neutral"]
UPOS_GOLD = [["NOUN", "NOUN", "VERB"], ["PRON"]]
PANX_GOLD = [["B-PER", "I-PER", "O", "B-LOC"]]
BUCC_GOLD = ["de-1\ten-7", "de-2\ten-3", "de-5\ten-5", "de-9\ten-1"]
XQUAD_GOLD = [("q1", ["Paris"]), ("q2", ["the big cat", "a cat"])]
MEWSLIX_GOLD = {"m1": ["Q1"], "m2": ["Q2"]}
LAREQA_GOLD = {"q1": ["a_en", "a_de"], "q2": ["b_en"]}


def write_hand_task(pred: Path, gold: Path, task: str, lang: str) -> None:
    """One language of one task, with the deviations the expected values below use."""
    p, g = task_file(pred, task, lang), task_file(gold, task, lang)
    if task == "xnli":
        write_lines(g, XNLI_GOLD)
        guess = {"en": XNLI_GOLD, "de": ["entailment", "neutral", "neutral", "entailment"]}
        write_lines(p, guess.get(lang, ["entailment", "neutral", "contradiction", "entailment"]))
    elif task == "pawsx":
        write_lines(g, ["1", "0"])
        write_lines(p, ["1", "0"] if lang == "en" else ["1", "1"])
    elif task == "udpos":
        write_tags(g, UPOS_GOLD)
        write_tags(p, [["NOUN", "ADJ", "VERB"], ["PRON"]] if lang == "en" else UPOS_GOLD)
    elif task == "panx":
        write_tags(g, PANX_GOLD)
        write_tags(p, [["B-PER", "I-PER", "O", "O"]] if lang == "en" else PANX_GOLD)
    elif task == "bucc2018":
        write_lines(g, BUCC_GOLD)
        write_lines(p, [*BUCC_GOLD[:2], "de-5\ten-6", "de-8\ten-1"] if lang == "de" else BUCC_GOLD)
    elif task == "tatoeba":
        write_lines(g, ["3", "1"])
        write_lines(p, ["3", "2"] if lang == "de" else ["3", "1"])
    elif task == "xcopa":
        write_jsonl(g, [{"idx": i, "label": label} for i, label in enumerate([0, 1, 1, 0])])
        write_jsonl(
            p, [{"label": label} for label in ([0, 1, 0, 0] if lang == "et" else [0, 1, 1, 0])]
        )
    elif task in ("xquad", "tydiqa"):
        write_json(g, squad_file(XQUAD_GOLD))
        answers = {"q1": "Paris", "q2": "big dog"} if (task, lang) == ("xquad", "en") else None
        write_json(p, answers or {"q1": "paris.", "q2": "The big cat"})
    elif task == "mlqa":
        gold_text = "北京大学" if lang == "zh" else "Berlin"
        write_json(g, squad_file([(f"{lang}-1", [gold_text])]))
        write_json(p, {f"{lang}-1": "北京" if lang == "zh" else "Berlin"})
    elif task == "mewslix":
        write_json(g, MEWSLIX_GOLD)
        rankings = {
            "en": {"m1": ["Q1", "Q9"], "m2": ["Q7", "Q8", "Q5", "Q2"]},
            "de": {"m1": ["Q9"], "m2": ["Q0", "Q2"]},
            "ar": {"m1": [f"X{i}" for i in range(20)] + ["Q1"], "m2": ["Q2"]},
        }
        write_json(p, rankings.get(lang, {"m1": ["Q1"], "m2": ["Q2", "Q1"]}))
    elif task == "lareqa":
        write_json(g, LAREQA_GOLD)
        ranking = {"q1": ["a_en", "x", "a_de"], "q2": ["b_en"]}
        write_json(p, ranking if lang == "en" else {"q1": ["a_de", "a_en"], "q2": ["b_en"]})
    else:
        raise AssertionError(task)


def hand_languages(benchmark: str) -> dict[str, list[str]]:
    languages = dict(O_XTREME_VERSIONS_LANG_DICT[benchmark])
    if benchmark == "xtreme-r":
        languages["lareqa"] = list(LAREQA_LANGUAGES)
    return languages


def write_hand_folders(root: Path, benchmark: str, skip: tuple[str, ...] = ()) -> tuple[Path, Path]:
    pred, gold = root / "predictions", root / "labels"
    for task, languages in hand_languages(benchmark).items():
        if task in skip:
            continue
        for lang in languages:
            write_hand_task(pred, gold, task, lang)
    return pred, gold


# Hand-computed task scores (percent).
XNLI = (100 + 50 + 13 * 75) / 15
PAWSX = (100 + 6 * 50) / 7
# udpos en: seqeval merges the run NOUN NOUN into one chunk, so gold has 3 chunks
# (NOUN, VERB; PRON) and the prediction 4 (NOUN, ADJ, VERB; PRON): 2 correct.
UDPOS_EN = {
    "precision": 200 / 4,
    "recall": 200 / 3,
    "f1": 2 * (2 / 4 * 2 / 3) / (2 / 4 + 2 / 3) * 100,
}
PANX_EN = {"precision": 100.0, "recall": 50.0, "f1": 200 / 3}
BUCC_DE = 50.0
TATOEBA_XTREME = (50 + 35 * 100) / 36
XQUAD_EN = {"exact_match": 50.0, "f1": 75.0}
MLQA_ZH = {"exact_match": 0.0, "f1": 200 / 3}  # 北 京 of 北 京 大 学: P 1, R 1/2


def qa_score(em: float, f1: float) -> float:
    return (em + f1) / 2


def test_xtreme_hand_computed_scores(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme")
    result = score_folders(pred, gold, "xtreme")

    assert result["xnli"]["accuracy"]["en"] == 100.0
    assert result["xnli"]["accuracy"]["de"] == 50.0
    assert result["xnli"]["accuracy"]["ar"] == 75.0
    assert result["xnli"]["avg_accuracy"] == pytest.approx(XNLI)
    assert result["pawsx"]["avg_metric"] == pytest.approx(PAWSX)

    udpos = (UDPOS_EN["f1"] + 32 * 100) / 33
    for metric, value in UDPOS_EN.items():
        assert result["udpos"][metric]["en"] == pytest.approx(value)
    assert result["udpos"]["f1"]["de"] == 100.0
    assert result["udpos"]["avg_f1"] == pytest.approx(udpos)
    assert result["udpos"]["avg_metric"] == pytest.approx(udpos)
    assert "token_accuracy" not in result["udpos"]
    panx = (PANX_EN["f1"] + 39 * 100) / 40
    assert result["panx"]["precision"]["en"] == pytest.approx(100.0)
    assert result["panx"]["recall"]["en"] == pytest.approx(50.0)
    assert result["panx"]["avg_metric"] == pytest.approx(panx)

    xquad_em = (XQUAD_EN["exact_match"] + 10 * 100) / 11
    xquad_f1 = (XQUAD_EN["f1"] + 10 * 100) / 11
    assert result["xquad"]["exact_match"]["en"] == pytest.approx(50.0)
    assert result["xquad"]["f1"]["en"] == pytest.approx(75.0)
    assert result["xquad"]["avg_exact_match"] == pytest.approx(xquad_em)
    assert result["xquad"]["avg_f1"] == pytest.approx(xquad_f1)
    xquad = qa_score(xquad_em, xquad_f1)
    assert result["xquad"]["avg_metric"] == pytest.approx(xquad)
    mlqa = qa_score((0 + 6 * 100) / 7, (MLQA_ZH["f1"] + 6 * 100) / 7)
    assert result["mlqa"]["f1"]["zh"] == pytest.approx(MLQA_ZH["f1"])
    assert result["mlqa"]["avg_metric"] == pytest.approx(mlqa)
    assert result["tydiqa"]["avg_metric"] == pytest.approx(100.0)

    bucc = (BUCC_DE + 3 * 100) / 4
    assert result["bucc2018"]["precision"]["de"] == pytest.approx(50.0)
    assert result["bucc2018"]["avg_metric"] == pytest.approx(bucc)
    assert result["tatoeba"]["avg_metric"] == pytest.approx(TATOEBA_XTREME)

    assert result["classification"] == pytest.approx((PAWSX + XNLI) / 2)
    assert result["tagging"] == pytest.approx((udpos + panx) / 2)
    assert result["qa"] == pytest.approx((xquad + mlqa + 100) / 3)
    assert result["retrieval"] == pytest.approx((bucc + TATOEBA_XTREME) / 2)
    tasks = [XNLI, PAWSX, udpos, panx, xquad, mlqa, 100.0, bucc, TATOEBA_XTREME]
    assert result["all_task"] == pytest.approx(sum(tasks) / 9)
    assert list(result) == [
        "all_task",
        "classification",
        "tagging",
        "qa",
        "retrieval",
        *O_XTREME_TASK2LANGS,
    ]


def test_xtreme_r_hand_computed_scores(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme-r")
    result = score_folders(pred, gold, "xtreme-r")

    xcopa = (75 + 10 * 100) / 11
    assert result["xcopa"]["accuracy"]["et"] == 75.0
    assert result["xcopa"]["avg_metric"] == pytest.approx(xcopa)
    # Mewsli-X: reciprocal rank within the top 20 (rank 21 scores 0).
    assert result["mewslix"]["map@20"]["en"] == pytest.approx((1 + 1 / 4) / 2 * 100)
    assert result["mewslix"]["map@20"]["de"] == pytest.approx((0 + 1 / 2) / 2 * 100)
    assert result["mewslix"]["map@20"]["ar"] == pytest.approx(50.0)
    mewslix = (62.5 + 25 + 50 + 8 * 100) / 11
    assert result["mewslix"]["avg_metric"] == pytest.approx(mewslix)
    # LAReQA: AP@20 of q1 = (1/1 + 2/3) / 2, q2 = 1.
    lareqa_en = ((1 + 2 / 3) / 2 + 1) / 2 * 100
    assert result["lareqa"]["map@20"]["en"] == pytest.approx(lareqa_en)
    assert list(result["lareqa"]["map@20"]) == list(LAREQA_LANGUAGES)
    lareqa = (lareqa_en + 10 * 100) / 11
    assert result["lareqa"]["avg_metric"] == pytest.approx(lareqa)

    udpos = (UDPOS_EN["f1"] + 37 * 100) / 38
    panx = (PANX_EN["f1"] + 47 * 100) / 48
    tatoeba = (50 + 40 * 100) / 41
    xquad = qa_score((50 + 11 * 100) / 12, (75 + 11 * 100) / 12)
    mlqa = qa_score((0 + 6 * 100) / 7, (MLQA_ZH["f1"] + 6 * 100) / 7)
    assert result["udpos"]["avg_metric"] == pytest.approx(udpos)
    assert result["panx"]["avg_metric"] == pytest.approx(panx)
    assert result["tatoeba"]["avg_metric"] == pytest.approx(tatoeba)
    assert result["xquad"]["avg_metric"] == pytest.approx(xquad)
    assert result["classification"] == pytest.approx((XNLI + xcopa) / 2)
    assert result["tagging"] == pytest.approx((udpos + panx) / 2)
    assert result["qa"] == pytest.approx((xquad + mlqa + 100) / 3)
    assert result["retrieval"] == pytest.approx((tatoeba + mewslix) / 2)
    assert result["multi_choice"] == pytest.approx(xcopa)
    tasks = [XNLI, panx, udpos, tatoeba, xcopa, lareqa, mewslix, xquad, mlqa, 100.0]
    assert result["all_task"] == pytest.approx(sum(tasks) / 10)
    assert "pawsx" not in result and "bucc2018" not in result


def test_output_is_the_official_structure_key_for_key(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme")
    ours = score_folders(pred, gold, "xtreme")
    assert_same_structure_and_values(ours, official_output(pred, gold, "xtreme"))
    dump_scores(ours, tmp_path / "scores.json")
    assert json.loads((tmp_path / "scores.json").read_text()) == ours
    assert list(ours["xquad"]) == [
        "exact_match",
        "f1",
        "avg_exact_match",
        "avg_f1",
        "avg_metric",
    ]
    assert list(ours["panx"]) == [
        "f1",
        "precision",
        "recall",
        "avg_f1",
        "avg_precision",
        "avg_recall",
        "avg_metric",
    ]
    assert list(ours["panx"]["f1"]) == O_XTREME_TASK2LANGS["panx"]


def test_xtreme_r_structure_matches_the_official_script_without_lareqa(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme-r", skip=("lareqa",))
    ours = score_folders(pred, gold, "xtreme-r")
    assert "all_task" not in ours  # lareqa missing: no overall score, as officially
    assert_same_structure_and_values(ours, official_output(pred, gold, "xtreme-r"))


def test_lareqa_breaks_the_official_script_but_is_scored_here(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme-r")
    with pytest.raises(KeyError, match="avg_metric"):
        official_output(pred, gold, "xtreme-r")  # its lareqa entry is {}: no all_task
    ours = score_folders(pred, gold, "xtreme-r")
    assert "all_task" in ours and ours["lareqa"]["avg_metric"] > 0


def test_definitions_match_the_official_script() -> None:
    for name, languages in (("xtreme", O_XTREME_TASK2LANGS), ("xtreme-r", O_XTREME_R_TASK2LANGS)):
        definition = BENCHMARKS[name]
        assert list(definition.task_languages) == list(languages)
        for task, langs in languages.items():
            expected = list(LAREQA_LANGUAGES) if task == "lareqa" else langs
            assert list(definition.task_languages[task]) == expected, task
        groups = O_XTREME_VERSIONS_GROUP_DICT[name]
        assert {g: list(t) for g, t in definition.groups.items()} == groups
    assert tuple(_o_split("ar,de,el,en,es,hi,ru,th,tr,vi,zh")) == LAREQA_LANGUAGES
    assert len({lang for langs in O_XTREME_TASK2LANGS.values() for lang in langs}) == 40
    assert len({lang for langs in O_XTREME_R_TASK2LANGS.values() for lang in langs}) == 50


# -- randomised folders against the oracle -------------------------------------------------

UPOS = ["NOUN", "VERB", "ADJ", "ADP", "DET", "PRON", "PROPN", "PUNCT"]
NER = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
WORDS = [
    "the", "a", "big", "cat", "el", "la", "der", "die", "của", "những", "كتاب", "الكتاب",
    "北京", "大学", "东", "Paris", "city,", "(1999)", "«x»", "Berlin.", "über", "ñandú",
]  # fmt: skip


def random_text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def mutate(rng: random.Random, value: Any, choices: list[Any], rate: float) -> Any:
    return rng.choice(choices) if rng.random() < rate else value


def write_random_task(
    rng: random.Random, pred: Path, gold: Path, task: str, lang: str, *, complete: bool = True
) -> None:
    p, g = task_file(pred, task, lang), task_file(gold, task, lang)
    rate = rng.choice([0.0, 0.3, 0.7])
    if task in ("xnli", "pawsx", "tatoeba"):
        choices = {"xnli": ["entailment", "neutral", "contradiction"], "pawsx": ["0", "1"]}
        choice = choices.get(task, [str(i) for i in range(6)])
        labels = [rng.choice(choice) for _ in range(rng.randint(1, 8))]
        blank = rng.random() < 0.3  # a trailing blank line counts as an example, both sides
        write_lines(g, labels, trailing_blank=blank)
        write_lines(p, [mutate(rng, x, choice, rate) for x in labels], trailing_blank=blank)
    elif task in ("udpos", "panx"):
        tags = UPOS if task == "udpos" else NER
        sentences = [
            [rng.choice(tags) for _ in range(rng.randint(1, 6))] for _ in range(rng.randint(1, 4))
        ]
        extra = rng.random() < 0.3  # two blank lines at the end: an empty sentence
        write_tags(g, sentences, extra_blank=extra)
        guessed = [[mutate(rng, t, tags, rate) for t in s] for s in sentences]
        write_tags(p, guessed, extra_blank=extra)
    elif task == "bucc2018":
        pairs = [f"{lang}-{i:06d}\ten-{rng.randint(0, 99):06d}" for i in range(rng.randint(1, 6))]
        kept = [pair for pair in pairs if rng.random() > rate]
        noise = [f"{lang}-{rng.randint(0, 9):06d}\ten-{rng.randint(0, 9):06d}" for _ in range(2)]
        blank = rng.random() < 0.2
        write_lines(g, pairs, trailing_blank=blank)
        write_lines(p, kept + noise[: rng.randint(0, 2)], trailing_blank=blank)
    elif task == "xcopa":
        labels = [rng.randint(0, 1) for _ in range(rng.randint(1, 6))]
        write_jsonl(g, [{"idx": i, "label": x} for i, x in enumerate(labels)])
        write_jsonl(p, [{"label": mutate(rng, x, [0, 1], rate)} for x in labels])
    elif task in ("xquad", "mlqa", "tydiqa"):
        questions = [
            (f"{lang}-{i}", [random_text(rng) for _ in range(rng.randint(1, 3))])
            for i in range(rng.randint(1, 5))
        ]
        write_json(g, squad_file(questions))
        answers = {}
        for qid, golds in questions:
            if not complete and rng.random() < 0.3:
                continue
            answers[qid] = rng.choice(golds) if rng.random() > rate else random_text(rng)
        if not complete:
            answers["unknown-id"] = "ignored"
        write_json(p, answers)
    elif task == "mewslix":
        entities = [f"Q{i}" for i in range(30)]
        # The official scorer takes the first gold id of each list, stripped.
        gold_map = {
            f"{lang}-m{i}": [
                rng.choice(entities) + rng.choice(["", " "]),
                *rng.sample(entities, rng.randint(0, 2)),
            ]
            for i in range(rng.randint(1, 5))
        }
        write_json(g, gold_map)
        ranks = {}
        for key in gold_map:
            if not complete and rng.random() < 0.3:
                continue
            ranks[key] = rng.sample(entities, rng.randint(0, 25))
        write_json(p, ranks)
    else:
        raise AssertionError(task)


def write_random_folders(
    root: Path, benchmark: str, seed: int, *, complete: bool = True, tasks: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    rng = random.Random(seed)
    pred, gold = root / "predictions", root / "labels"
    for task, languages in O_XTREME_VERSIONS_LANG_DICT[benchmark].items():
        if (tasks and task not in tasks) or not languages:
            continue
        if not tasks and rng.random() < 0.15:
            continue  # leave a task out now and then: its groups must disappear
        for lang in languages:
            write_random_task(rng, pred, gold, task, lang, complete=complete)
    return pred, gold


@pytest.mark.parametrize(
    ("benchmark", "seed"), [("xtreme", 1), ("xtreme", 2), ("xtreme-r", 3), ("xtreme-r", 4)]
)
def test_random_folders_agree_with_the_official_script(
    tmp_path: Path, benchmark: str, seed: int
) -> None:
    pred, gold = write_random_folders(tmp_path, benchmark, seed)
    ours = score_folders(pred, gold, benchmark)
    assert_same_structure_and_values(ours, official_output(pred, gold, benchmark))


def test_random_folders_with_every_task_give_the_official_overall(tmp_path: Path) -> None:
    pred, gold = write_random_folders(tmp_path, "xtreme", 5, tasks=tuple(O_XTREME_TASK2LANGS))
    ours = score_folders(pred, gold, "xtreme")
    theirs = official_output(pred, gold, "xtreme")
    assert "all_task" in theirs
    assert_same_structure_and_values(ours, theirs)


def test_lenient_mode_scores_unanswered_questions_as_the_official_script(tmp_path: Path) -> None:
    tasks = ("xquad", "mlqa", "tydiqa", "mewslix")
    pred, gold = write_random_folders(tmp_path, "xtreme-r", 6, complete=False, tasks=tasks)
    with pytest.raises(XstiltsError, match=r"questions|queries"):
        score_folders(pred, gold, "xtreme-r")
    ours = score_folders(pred, gold, "xtreme-r", strict=False)
    assert_same_structure_and_values(ours, official_output(pred, gold, "xtreme-r"))


# -- groups, skipping and errors ----------------------------------------------------------


def test_task_without_predictions_is_skipped_and_its_group_dropped(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme")
    for path in (pred / "mlqa").iterdir():
        path.unlink()
    (pred / "mlqa").rmdir()
    result = score_folders(pred, gold, "xtreme")
    assert "mlqa" not in result
    assert "qa" not in result and "all_task" not in result
    assert {"classification", "tagging", "retrieval", "xquad", "tydiqa"} <= set(result)
    assert find_tasks(pred, gold, "xtreme") == (
        [t for t in O_XTREME_TASK2LANGS if t != "mlqa"],
        ["mlqa"],
    )
    assert_same_structure_and_values(result, official_output(pred, gold, "xtreme"))


def test_group_missing_one_task_has_no_group_score() -> None:
    block = {"accuracy": {"de": 80.0}, "avg_accuracy": 80.0, "avg_metric": 80.0}
    result = aggregate({"xnli": block}, "xtreme")
    assert result == {"xnli": block}
    result = aggregate({"xnli": block, "pawsx": {**block, "avg_metric": 60.0}}, "xtreme")
    assert list(result) == ["classification", "pawsx", "xnli"]
    assert result["classification"] == pytest.approx(70.0)
    r_result = aggregate({"xcopa": block}, "xtreme-r")
    assert r_result["multi_choice"] == 80.0 and "classification" not in r_result


def test_missing_prediction_file_names_the_file(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme", skip=("udpos", "panx", "mlqa"))
    missing = submission_file(pred, "xnli", "sw")
    missing.unlink()
    with pytest.raises(XstiltsError) as error:
        score_folders(pred, gold, "xtreme")
    assert str(missing) in str(error.value) and "missing" in str(error.value)
    assert "\n" not in str(error.value)


def _expect_count_error(pred: Path, gold: Path, benchmark: str, *needles: str) -> None:
    with pytest.raises(XstiltsError) as error:
        score_folders(pred, gold, benchmark)
    message = str(error.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message


def test_line_count_mismatch_names_file_and_counts(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme", skip=("udpos", "panx"))
    bad = submission_file(pred, "xnli", "de")
    write_lines(bad, XNLI_GOLD[:3])
    _expect_count_error(
        pred, gold, "xtreme", str(bad), "3 lines", str(submission_file(gold, "xnli", "de")), "has 4"
    )


def test_trailing_blank_line_is_an_example_as_in_the_official_reader(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme", skip=("udpos", "panx"))
    bad = submission_file(pred, "tatoeba", "de")
    write_lines(bad, ["3", "2"], trailing_blank=True)
    _expect_count_error(pred, gold, "xtreme", str(bad), "3 lines", "has 2")
    assert read_lines(bad) == ["3", "2", ""]


def test_sentence_and_tag_count_mismatches_name_file_and_counts(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme")
    bad = submission_file(pred, "udpos", "fr")
    write_tags(bad, UPOS_GOLD[:1])
    _expect_count_error(pred, gold, "xtreme", str(bad), "1 sentences", "has 2")
    write_tags(bad, [["NOUN", "NOUN"], ["PRON"]])
    _expect_count_error(pred, gold, "xtreme", "sentence 1", str(bad), "2 tags", "has 3")


def test_question_and_query_count_mismatches_name_file_and_counts(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme-r")
    bad = submission_file(pred, "tydiqa", "sw")
    write_json(bad, {"q1": "Paris"})
    _expect_count_error(pred, gold, "xtreme-r", str(bad), "1 questions", "has 2")
    write_json(bad, {"q1": "Paris", "q3": "x"})
    _expect_count_error(pred, gold, "xtreme-r", str(bad), "'q3'")
    write_hand_task(pred, gold, "tydiqa", "sw")
    bad = submission_file(pred, "mewslix", "uk")
    write_json(bad, {"m1": ["Q1"]})
    _expect_count_error(pred, gold, "xtreme-r", str(bad), "1 queries", "has 2")


def test_xcopa_count_mismatch_and_bad_lines(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme-r", skip=("udpos", "panx"))
    bad = submission_file(pred, "xcopa", "qu")
    write_jsonl(bad, [{"label": 0}])
    _expect_count_error(pred, gold, "xtreme-r", str(bad), "1 lines", "has 4")
    bad.write_text('{"label": 0}\nnot json\n')
    _expect_count_error(pred, gold, "xtreme-r", str(bad), "line 2")


def test_folder_errors(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme", skip=("udpos", "panx"))
    with pytest.raises(XstiltsError, match="does not exist"):
        score_folders(tmp_path / "nowhere", gold, "xtreme")
    with pytest.raises(XstiltsError, match="no xtreme-r task folder"):
        score_folders(pred, tmp_path / "predictions" / "xnli", "xtreme-r")
    with pytest.raises(XstiltsError, match="unknown benchmark"):
        score_folders(pred, gold, "xtreme-x")  # type: ignore[arg-type]
    bad = submission_file(pred, "xquad", "th")
    bad.write_text("{not json")
    with pytest.raises(XstiltsError, match=re.escape(str(bad))):
        score_folders(pred, gold, "xtreme")


def test_readers_follow_the_official_ones(tmp_path: Path) -> None:
    path = tmp_path / "tags.tsv"
    path.write_text(" B-PER \nI-PER\n\n\nO\n")
    assert read_tag_sentences(path) == [["B-PER", "I-PER"], [], ["O"]] == _o_read_tag(path)
    path.write_text("a\r\n b\t\n\n")
    assert read_lines(path) == ["a", "b", ""] == _o_read_label(path)
    pred_dir, gold_dir = tmp_path / "p", tmp_path / "g"
    write_hand_task(pred_dir, gold_dir, "xquad", "en")
    wrapped = submission_file(pred_dir, "xquad", "en")
    write_json(wrapped, {"data": {"q1": "Paris", "q2": "big dog"}})
    assert read_json(wrapped) == {"q1": "Paris", "q2": "big dog"}


def test_token_accuracy_on_request_and_report(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme")
    result = score_folders(pred, gold, "xtreme", include_token_accuracy=True)
    assert result["udpos"]["token_accuracy"]["en"] == pytest.approx(300 / 4)
    assert result["udpos"]["avg_metric"] == result["udpos"]["avg_f1"]
    report = format_report(result)
    assert "====== udpos ======" in report and "------ f1 ------" in report
    assert f"metric: {result['xquad']['avg_metric']:.2f}" in report
    assert f"all_task: {result['all_task']:.2f}" in report


# -- the last bit ---------------------------------------------------------------------------


def test_accuracy_and_map_divide_before_scaling_as_the_official_script() -> None:
    """100 * 1 / 3 and 1 / 3 * 100 differ in the last bit; the official script does the
    latter, and its JSON text is what users diff against."""
    assert accuracy(["a", "b", "c"], ["a", "x", "y"])["accuracy"] == 1 / 3 * 100
    assert 1 / 3 * 100 != 100 * 1 / 3
    ranked = [["x", "a"], ["y", "z"], ["b"]]
    assert mean_average_precision_at_k(ranked, [["a"], ["q"], ["q"]])["map@20"] == 0.5 / 3 * 100


@pytest.mark.parametrize(("benchmark", "seed"), [("xtreme", 11), ("xtreme-r", 12)])
def test_random_folders_give_the_official_json_text(tmp_path: Path, benchmark, seed) -> None:
    pred, gold = write_random_folders(tmp_path, benchmark, seed)
    ours = json.dumps(score_folders(pred, gold, benchmark), indent=2)
    assert ours == json.dumps(official_output(pred, gold, benchmark), indent=2)


def test_a_question_listed_twice_in_the_labels_is_answered_once(tmp_path: Path) -> None:
    pred, gold = write_hand_folders(tmp_path, "xtreme", skip=("udpos", "panx"))
    label = task_file(gold, "xquad", "de")
    write_json(label, squad_file([*XQUAD_GOLD, XQUAD_GOLD[0]]))
    answered = score_folders(pred, gold, "xtreme")  # strict: every id has its answer
    assert "xquad" in answered
