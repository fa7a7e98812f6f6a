"""The benchmark tasks of the built-in catalog against XTREME and XTREME-R.

Languages per benchmark (REFERENCE.md section 3, which matches TASK2LANGS of
google-research/xtreme's evaluate.py), the XTREME-R additions, hub sources and
label orders, and local loading from files laid out exactly as XTREME's
scripts/download_data.sh and utils_preprocess.py leave them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from xstilts.errors import XstiltsError
from xstilts.formats import get_format
from xstilts.metrics.xtreme import get_benchmark
from xstilts.tasks import TaskSpec, load_registry
from xstilts.tasks.loading import LoadedSplit, load_split
from xstilts.tasks.registry import TASK_PATH_ENV, TaskRegistry

# REFERENCE.md section 3 (XTREME, Hu et al. 2020), in its order.
XTREME = {
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "pawsx": "de en es fr ja ko zh",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th "
    "tl tr ur vi yo zh",
    "panx": "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru "
    "ja ka ko th sw yo my zh kk tr et fi hu",
    "xquad": "en es de el ru tr ar vi th zh hi",
    "mlqa": "en es de ar hi vi zh",
    "tydiqa": "en ar bn fi id ko ru sw te",
    "bucc2018": "de fr ru zh",
    "tatoeba": "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja "
    "ka ko th sw zh kk tr et fi hu",
}
XTREME = {task: langs.split() for task, langs in XTREME.items()}

# XTREME-R (Ruder et al. 2021): languages added to XTREME's tasks, and XCOPA.
XTREME_R_ADDED = {
    "udpos": ["lt", "pl", "uk", "wo", "ro"],
    "panx": ["qu", "pl", "uk", "az", "lt", "pa", "gu", "ro"],
    "tatoeba": ["az", "lt", "pl", "uk", "ro"],
    "xquad": ["ro"],
    "xnli": [],
    "mlqa": [],
    "tydiqa": [],
}
XCOPA = ["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"]
XTREME_R = {task: XTREME[task] + added for task, added in XTREME_R_ADDED.items()}
XTREME_R["xcopa"] = XCOPA

# The 40 languages of XTREME (google-research/xtreme README) and the 10 XTREME-R adds.
XTREME_40 = [
    "af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he",
    "hi", "hu", "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl",
    "pt", "ru", "sw", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo", "zh",
]  # fmt: skip
XTREME_R_NEW = ["az", "gu", "ht", "lt", "pa", "pl", "qu", "ro", "uk", "wo"]

# ClassLabel names of the hub datasets, in index order (their dataset cards).
HUB_LABELS = {
    "xnli": ["entailment", "neutral", "contradiction"],  # facebook/xnli
    "mnli": ["entailment", "neutral", "contradiction"],  # nyu-mll/glue mnli
    "snli": ["entailment", "neutral", "contradiction"],  # stanfordnlp/snli
    "anli_plus": ["entailment", "neutral", "contradiction"],  # facebook/anli too
    "qqp": ["not_duplicate", "duplicate"],  # nyu-mll/glue qqp
    "sst2": ["negative", "positive"],  # nyu-mll/glue sst2
    "pawsx": ["0", "1"],  # google-research-datasets/paws-x
    # google/xtreme PAN-X.* ner_tags and unimelb-nlp/wikiann ner_tags
    "panx": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
    # google/xtreme udpos.* pos_tags
    "udpos": [
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
    ],
}  # fmt: skip

# The udpos.* configs of google/xtreme: English language names.
UDPOS_HUB_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip

# LASER's Tatoeba codes (lang3_dict of XTREME's utils_preprocess.py).
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn", "az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron",
}  # fmt: skip

INTERMEDIATE_FAMILIES = {
    "mnli": "nli",
    "snli": "nli",
    "anli_plus": "nli",
    "qqp": "paraphrase",
    "squad": "qa",
    "squad_v2": "qa",
    "hellaswag": "commonsense",
    "cosmosqa": "commonsense",
    "commonsenseqa": "commonsense",
    "sst2": "sentiment",
    "ccg": "syntax",
}


@pytest.fixture(autouse=True)
def _no_task_files_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TASK_PATH_ENV, raising=False)


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return load_registry()


def benchmark_languages(spec: TaskSpec, benchmark: str) -> list[str]:
    return spec.benchmark_languages.get(benchmark, spec.languages)


def benchmark_tasks(registry: TaskRegistry, benchmark: str) -> list[TaskSpec]:
    return [spec for spec in registry if benchmark in spec.benchmarks]


# ---------------------------------------------------------------------------
# Languages


def test_xtreme_has_its_nine_tasks(registry: TaskRegistry) -> None:
    assert {spec.name for spec in benchmark_tasks(registry, "xtreme")} == set(XTREME)


def test_xtreme_r_keeps_seven_tasks_adds_xcopa_and_drops_pawsx_and_bucc(registry) -> None:
    names = {spec.name for spec in benchmark_tasks(registry, "xtreme-r")}
    assert set(XTREME_R) <= names
    assert not {"pawsx", "bucc2018"} & names


@pytest.mark.parametrize("task", sorted(XTREME))
def test_xtreme_languages_are_exactly_the_papers(registry: TaskRegistry, task: str) -> None:
    spec = registry.get(task)
    assert spec.benchmark_languages["xtreme"] == XTREME[task]


@pytest.mark.parametrize("task", sorted(XTREME_R))
def test_xtreme_r_languages(registry: TaskRegistry, task: str) -> None:
    spec = registry.get(task)
    assert spec.benchmark_languages["xtreme-r"] == XTREME_R[task]
    if task in XTREME_R_ADDED:
        added = [lang for lang in XTREME_R[task] if lang not in XTREME[task]]
        assert added == XTREME_R_ADDED[task]


@pytest.mark.parametrize("task", sorted(set(XTREME) | set(XTREME_R)))
def test_languages_are_the_union_of_the_benchmarks(registry: TaskRegistry, task: str) -> None:
    spec = registry.get(task)
    assert set(spec.benchmark_languages) == set(spec.benchmarks)
    expected = {"xtreme": XTREME, "xtreme-r": XTREME_R}
    union = [lang for b in spec.benchmarks for lang in expected[b][task]]
    assert spec.languages == list(dict.fromkeys(union))


def test_xtreme_covers_40_languages(registry: TaskRegistry) -> None:
    tasks = benchmark_tasks(registry, "xtreme")
    union = {lang for s in tasks for lang in benchmark_languages(s, "xtreme")}
    assert len(union) == 40
    assert union == set(XTREME_40)


def test_xtreme_r_covers_50_languages(registry: TaskRegistry) -> None:
    tasks = benchmark_tasks(registry, "xtreme-r")
    union = {lang for s in tasks for lang in benchmark_languages(s, "xtreme-r")}
    assert len(union) == 50
    assert union == set(XTREME_40) | set(XTREME_R_NEW)


@pytest.mark.parametrize("benchmark", ["xtreme", "xtreme-r"])
def test_catalog_agrees_with_the_scorer(registry: TaskRegistry, benchmark: str) -> None:
    """The catalog and xstilts.metrics.xtreme (which scores submissions) name the
    same tasks with the same languages, in the same order."""
    definition = get_benchmark(benchmark)
    tasks = {spec.name: spec for spec in benchmark_tasks(registry, benchmark)}
    assert set(tasks) == set(definition.tasks)
    for name, spec in tasks.items():
        assert benchmark_languages(spec, benchmark) == list(definition.task_languages[name])


def test_benchmark_languages_must_be_among_the_languages() -> None:
    base = {"name": "t", "family": "x", "format": "classification", "languages": ["en", "de"]}
    TaskSpec.model_validate({**base, "benchmark_languages": {"xtreme": ["de"]}})
    with pytest.raises(ValidationError, match=r"benchmark_languages\['xtreme-r'\]: fr, qu"):
        TaskSpec.model_validate({**base, "benchmark_languages": {"xtreme-r": ["de", "fr", "qu"]}})


def test_codes_of_the_new_languages(registry: TaskRegistry) -> None:
    tatoeba = registry.get("tatoeba")
    assert tatoeba.codes == {lang: TATOEBA_CODES[lang] for lang in tatoeba.languages}
    udpos = registry.get("udpos")
    names = {**UDPOS_HUB_NAMES, "lt": "Lithuanian", "pl": "Polish", "uk": "Ukrainian"}
    names |= {"wo": "Wolof", "ro": "Romanian"}
    assert udpos.codes == {lang: names[lang] for lang in udpos.languages}


# ---------------------------------------------------------------------------
# Families, training data, hub sources and label orders


@pytest.mark.parametrize(("task", "family"), sorted(INTERMEDIATE_FAMILIES.items()))
def test_intermediate_task_families(registry: TaskRegistry, task: str, family: str) -> None:
    spec = registry.get(task)
    assert spec.family == family
    assert spec.languages == ["en"]
    assert not spec.benchmarks


def test_xnli_trains_on_multinli(registry: TaskRegistry) -> None:
    xnli = registry.get("xnli")
    [hub] = xnli.sources("train", "en", "hub")
    assert (hub.hub, hub.config, hub.split) == ("nyu-mll/glue", "mnli", "train")
    [local] = xnli.sources("train", "en", "local")
    assert local.path == ["xnli/train-en.tsv"]  # XNLI-MT's multinli.train.en.tsv


@pytest.mark.parametrize("task", ["xquad", "mlqa"])
def test_xquad_and_mlqa_train_on_squad_v1_1(registry: TaskRegistry, task: str) -> None:
    spec = registry.get(task)
    [hub] = spec.sources("train", "en", "hub")
    assert (hub.hub, hub.config, hub.split) == ("rajpurkar/squad", None, "train")
    [local] = spec.sources("train", "en", "local")
    assert local.path == ["squad/train-v1.1.json"]
    [dev] = spec.sources("validation", "en", "local")
    assert dev.path == ["squad/dev-v1.1.json"]


def test_tydiqa_trains_on_its_english_goldp_data(registry: TaskRegistry) -> None:
    tydiqa = registry.get("tydiqa")
    [hub] = tydiqa.sources("train", "en", "hub")
    assert (hub.hub, hub.config, hub.where) == ("google/xtreme", "tydiqa", {"id": "^english-"})
    [dev] = tydiqa.sources("test", "sw", "hub")
    assert (dev.split, dev.where) == ("validation", {"id": "^swahili-"})
    [validation] = tydiqa.sources("validation", "sw", "hub")
    assert (validation.split, validation.where) == ("train", {"id": "^swahili-"})


@pytest.mark.parametrize("task", sorted(HUB_LABELS))
def test_labels_follow_the_hub_class_label_order(registry: TaskRegistry, task: str) -> None:
    assert registry.get(task).labels == HUB_LABELS[task]


def test_hub_configs_per_language(registry: TaskRegistry) -> None:
    panx = registry.get("panx")
    for lang in panx.languages:
        [source] = panx.sources("test", lang, "hub")
        expected = ("google/xtreme", f"PAN-X.{lang}")
        if lang in XTREME_R_ADDED["panx"]:
            expected = ("unimelb-nlp/wikiann", lang)
        assert (source.hub, source.config, source.split) == (*expected, "test")
        assert source.columns == {"tags": "ner_tags"}
    udpos = registry.get("udpos")
    for lang in XTREME["udpos"]:
        [source] = udpos.sources("test", lang, "hub")
        assert (source.hub, source.config) == ("google/xtreme", f"udpos.{UDPOS_HUB_NAMES[lang]}")
        assert source.columns == {"tags": "pos_tags"}
    for lang in XTREME_R_ADDED["udpos"]:  # no hub copy: XTREME's local files
        [source] = udpos.sources("test", lang, "hub")
        assert source.mode == "local" and source.path == [f"udpos/test-{lang}.tsv"]
    xquad = registry.get("xquad")
    for lang in xquad.languages:
        [source] = xquad.sources("test", lang, "hub")
        expected = (
            ("google/xquad", "xquad.ro") if lang == "ro" else ("google/xtreme", f"XQuAD.{lang}")
        )
        assert (source.hub, source.config, source.split) == (*expected, "validation")
    mlqa = registry.get("mlqa")
    for lang in mlqa.languages:
        [source] = mlqa.sources("test", lang, "hub")
        assert (source.hub, source.config, source.split) == (
            "google/xtreme", f"MLQA.{lang}.{lang}", "test",
        )  # fmt: skip
    for task, config in (("xnli", "{lang}"), ("pawsx", "{lang}"), ("xcopa", "{lang}")):
        spec = registry.get(task)
        for lang in spec.languages:
            [source] = spec.sources("test", lang, "hub")
            assert source.config == config.format(lang=lang)


# ---------------------------------------------------------------------------
# Local files exactly as google-research/xtreme's scripts leave them


def load(spec: TaskSpec, split: str, lang: str, data_dir: Path, mode: str = "local") -> LoadedSplit:
    fmt = get_format(spec.format)
    return load_split(
        spec, split, lang, fields=fmt.fields, check_row=fmt.check_row(spec), mode=mode,
        data_dir=data_dir,
    )  # fmt: skip


def write_xtreme_tsv(path: Path, rows: list[list[str]]) -> Path:
    """What utils_preprocess.py writes for XNLI and PAWS-X: csv.writer with a tab
    delimiter and its defaults (fields holding '"' get quoted, lines end in CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows(rows)
    return path


def as_xtreme_reads(path: Path) -> list[list[str]]:
    """How XTREME's processors read those files back: DataProcessor._read_tsv of
    transformers, csv.reader with quotechar=None, i.e. no quote handling."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quotechar=None))


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_tagged(path: Path, sentences: list[list[tuple[str, str]]], test: bool) -> Path:
    """udpos/panx {split}-{lang}.tsv: "word<TAB>tag" lines (the word alone in test files),
    a blank line between sentences, none after the last."""
    blocks = [
        "\n".join(word if test else f"{word}\t{tag}" for word, tag in sentence)
        for sentence in sentences
    ]
    return write_text(path, "\n\n".join(blocks) + "\n")


def squad_file(path: Path, questions: list[dict], *, strip_answers: bool) -> Path:
    """SQuAD JSON; strip_answers as remove_qa_test_annotations of utils_preprocess.py
    does it: one paragraph per question, a single empty answer at 0, no titles."""
    data = []
    for q in questions:
        answers = [{"answer_start": 0, "text": ""}] if strip_answers else q["answers"]
        qa = {"answers": answers, "question": q["question"], "id": q["id"]}
        article: dict = {"paragraphs": [{"context": q["context"], "qas": [qa]}]}
        if not strip_answers:
            article["title"] = "T"
        data.append(article)
    return write_text(path, json.dumps({"data": data, "version": "1.1"}, ensure_ascii=False))


QUESTIONS = [
    {"id": "q1", "context": "Berlin ist die Hauptstadt.", "question": "Was ist Berlin?",
     "answers": [{"answer_start": 14, "text": "die Hauptstadt"}]},
    {"id": "q2", "context": "Der Rhein fließt nach Norden.", "question": "Wohin?",
     "answers": [{"answer_start": 22, "text": "Norden"}]},
]  # fmt: skip


@pytest.mark.parametrize("task", ["xnli", "pawsx"])
def test_local_sentence_pairs_as_xtreme_writes_them(registry, tmp_path: Path, task: str) -> None:
    labels = {"xnli": ["contradiction", "entailment"], "pawsx": ["0", "1"]}[task]
    lang = {"xnli": "sw", "pawsx": "ko"}[task]
    train = [['He said "yes."', "He agreed.", labels[1]], ["A cat.", "A dog.", labels[0]]]
    write_xtreme_tsv(tmp_path / task / "train-en.tsv", train)
    write_xtreme_tsv(tmp_path / task / f"dev-{lang}.tsv", [["X y.", "Z.", labels[0]]])
    test_path = write_xtreme_tsv(
        tmp_path / task / f"test-{lang}.tsv",
        [['"Quoted" text.', "Plain."], ["Ein Satz.", "Noch einer."]],
    )
    spec = registry.get(task)
    loaded = load(spec, "train", "en", tmp_path).examples
    xtreme_view = as_xtreme_reads(tmp_path / task / "train-en.tsv")
    # Exactly the text XTREME's own processors feed the model (quotes as written).
    assert loaded["text_a"] == [row[0] for row in xtreme_view]
    assert loaded["text_a"][0] == '"He said ""yes."""'
    assert loaded["text_b"] == ["He agreed.", "A dog."]
    assert loaded["label"] == [spec.labels.index(labels[1]), spec.labels.index(labels[0])]
    dev = load(spec, "validation", lang, tmp_path).examples
    assert dev["label"] == [spec.labels.index(labels[0])]
    test = load(spec, "test", lang, tmp_path).examples  # XTREME strips the test labels
    assert test["text_a"] == [row[0] for row in as_xtreme_reads(test_path)]
    assert test["label"] == [-1, -1]


def test_local_panx_as_xtreme_writes_it(registry, tmp_path: Path) -> None:
    sentences = [[("Paris", "B-LOC"), ("is", "O"), ("nice", "O")],
                 [("Jean", "B-PER"), ("Dupont", "I-PER"), ("(", "O"), ("UN", "B-ORG")]]  # fmt: skip
    spec = registry.get("panx")
    for lang in ("en", "qu"):  # qu: an XTREME-R addition
        write_tagged(tmp_path / "panx" / f"train-{lang}.tsv", sentences, test=False)
        write_tagged(tmp_path / "panx" / f"dev-{lang}.tsv", sentences, test=False)
        write_tagged(tmp_path / "panx" / f"test-{lang}.tsv", sentences, test=True)
        for split in ("train", "validation"):
            loaded = load(spec, split, lang, tmp_path).examples
            assert loaded["tokens"] == [[w for w, _ in s] for s in sentences]
            assert loaded["tags"] == [[spec.labels.index(t) for _, t in s] for s in sentences]
        test = load(spec, "test", lang, tmp_path).examples
        assert test["tokens"] == [[w for w, _ in s] for s in sentences]
        assert test["tags"] == [[], []]


def test_local_panx_raw_release_with_language_prefixes(registry, tmp_path: Path) -> None:
    write_text(tmp_path / "panx_dataset" / "de-dev", "de:Berlin\tB-LOC\nde:liegt\tO\n\n")
    loaded = load(registry.get("panx"), "validation", "de", tmp_path).examples
    assert loaded["tokens"] == [["Berlin", "liegt"]]


def test_local_udpos_as_xtreme_writes_it(registry, tmp_path: Path) -> None:
    sentences = [[("Ku", "PRON"), ("dem", "VERB"), (".", "PUNCT")], [("Waaw", "INTJ")]]
    spec = registry.get("udpos")
    write_tagged(tmp_path / "udpos" / "train-en.tsv", sentences, test=False)
    write_tagged(tmp_path / "udpos" / "dev-en.tsv", sentences, test=False)
    train = load(spec, "train", "en", tmp_path).examples
    assert train["tags"] == [[spec.labels.index(t) for _, t in s] for s in sentences]
    assert len(load(spec, "validation", "en", tmp_path).examples) == 2
    for lang in ("yo", "wo"):  # wo: an XTREME-R addition
        write_tagged(tmp_path / "udpos" / f"test-{lang}.tsv", sentences, test=True)
        test = load(spec, "test", lang, tmp_path).examples
        assert test["tokens"] == [["Ku", "dem", "."], ["Waaw"]]
        assert test["tags"] == [[], []]
    # The XTREME-R additions have no hub copy: hub mode reads the local files.
    assert load(spec, "test", "wo", tmp_path, mode="hub").examples["tokens"][1] == ["Waaw"]


def test_local_squad_training_data(registry, tmp_path: Path) -> None:
    squad_file(tmp_path / "squad" / "train-v1.1.json", QUESTIONS, strip_answers=False)
    squad_file(tmp_path / "squad" / "dev-v1.1.json", QUESTIONS[:1], strip_answers=False)
    for task in ("xquad", "mlqa"):
        train = load(registry.get(task), "train", "en", tmp_path).examples
        assert train["id"] == ["q1", "q2"]
        assert train["answers"][1] == [{"text": "Norden", "answer_start": 22}]
        assert load(registry.get(task), "validation", "en", tmp_path).examples["id"] == ["q1"]


def test_local_xquad_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    for lang in ("de", "ro"):
        squad_file(tmp_path / "xquad" / f"xquad.{lang}.json", QUESTIONS, strip_answers=True)
        test = load(registry.get("xquad"), "test", lang, tmp_path).examples
        assert test["id"] == ["q1", "q2"]
        assert test["context"] == [q["context"] for q in QUESTIONS]
        # XTREME's placeholder answer {"text": "", "answer_start": 0} is no gold answer
        assert test["answers"] == [[], []]
        assert get_format("span_qa").references(registry.get("xquad"), test) is None


def test_local_mlqa_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    root = tmp_path / "mlqa" / "MLQA_V1"
    squad_file(root / "dev" / "dev-context-de-question-de.json", QUESTIONS, strip_answers=False)
    squad_file(root / "test" / "test-context-de-question-de.json", QUESTIONS, strip_answers=True)
    mlqa = registry.get("mlqa")
    dev = load(mlqa, "validation", "de", tmp_path).examples
    assert dev["answers"][0] == [{"text": "die Hauptstadt", "answer_start": 14}]
    assert load(mlqa, "test", "de", tmp_path).examples["id"] == ["q1", "q2"]


def test_local_tydiqa_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    root = tmp_path / "tydiqa"
    # utils_preprocess.py: per-language training files named tydiqa.goldp.{iso}.train.json,
    # question ids cut to their last '-' part; dev files renamed, their answers stripped.
    train = [{**q, "id": str(i)} for i, q in enumerate(QUESTIONS)]
    squad_file(root / "tydiqa-goldp-v1.1-train" / "tydiqa.goldp.en.train.json", train,
               strip_answers=False)  # fmt: skip
    dev = [{**q, "id": f"swahili-{i}-0"} for i, q in enumerate(QUESTIONS)]
    squad_file(root / "tydiqa-goldp-v1.1-dev" / "tydiqa.goldp.sw.dev.json", dev, strip_answers=True)
    tydiqa = registry.get("tydiqa")
    assert load(tydiqa, "test", "sw", tmp_path).examples["id"] == ["swahili-0-0", "swahili-1-0"]
    # GoldP's dev set is the test set: validation is never read from it (locally, only
    # English has training questions to hold a validation split out of).
    with pytest.raises(XstiltsError, match=r"split 'validation', language 'sw'.*no data source"):
        load(tydiqa, "validation", "sw", tmp_path)


def test_tydiqa_validation_is_held_out_of_english_training(registry, tmp_path: Path) -> None:
    """A deterministic tenth of the English training questions (by id) validates; the
    rest trains; the two partition the file, whatever its order."""
    questions = [{**QUESTIONS[i % 2], "id": f"english-{i}-1"} for i in range(200)]
    folder = tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-train"
    squad_file(folder / "tydiqa.goldp.en.train.json", questions, strip_answers=False)
    tydiqa = registry.get("tydiqa")
    train = list(load(tydiqa, "train", "en", tmp_path).examples["id"])
    validation = list(load(tydiqa, "validation", "en", tmp_path).examples["id"])
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(q["id"] for q in questions)
    assert 5 <= len(validation) <= 40  # 10% of 200, give or take the hash
    squad_file(folder / "tydiqa.goldp.en.train.json", questions[::-1], strip_answers=False)
    assert list(load(tydiqa, "validation", "en", tmp_path).examples["id"]) == validation[::-1]
    for mode in ("hub", "local"):
        [train_source] = tydiqa.sources("train", "en", mode)
        [held_out] = tydiqa.sources("validation", "en", mode)
        assert held_out.origins() == train_source.origins()
        assert held_out.holdout.complements(train_source.holdout)
        assert not tydiqa.shared_data("validation", "test", "en", mode)


def test_local_tydiqa_original_dev_files(registry, tmp_path: Path) -> None:
    path = tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-dev" / "tydiqa-goldp-dev-finnish.json"
    squad_file(path, QUESTIONS, strip_answers=False)
    dev = load(registry.get("tydiqa"), "test", "fi", tmp_path).examples
    assert dev["answers"][1] == [{"text": "Norden", "answer_start": 22}]


def test_local_bucc_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    root = tmp_path / "bucc2018"
    for split in ("dev", "test"):
        write_text(root / f"fr-en.{split}.fr", "fr-000000001\tBonjour .\nfr-000000002\tNon .\n")
        write_text(root / f"fr-en.{split}.en", "en-000000001\tNo .\nen-000000002\tHello .\n")
    write_text(root / "fr-en.dev.gold", "fr-000000001\ten-000000002\n")  # test gold: deleted
    bucc = registry.get("bucc2018")
    dev = load(bucc, "validation", "fr", tmp_path).examples
    assert dev["gold"] == ["en-000000002", "", "", ""]
    test = load(bucc, "test", "fr", tmp_path).examples
    assert test["side"] == ["source", "source", "target", "target"]
    assert set(test["gold"]) == {""}


def test_local_tatoeba_laser_files(registry, tmp_path: Path) -> None:
    for code, lines in (("aze", ["Salam .", "Sag ol ."]), ("deu", ["Hallo .", "Danke ."])):
        write_text(tmp_path / "tatoeba" / f"tatoeba.{code}-eng.{code}", "\n".join(lines) + "\n")
        write_text(tmp_path / "tatoeba" / f"tatoeba.{code}-eng.eng", "Hello .\nThanks .\n")
    for lang in ("az", "de"):
        test = load(registry.get("tatoeba"), "test", lang, tmp_path).examples
        assert test["side"] == ["source", "source", "target", "target"]
        assert test["gold"] == ["0", "1", "", ""]


def test_local_xcopa_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    def rows(prefix: str) -> str:
        return "".join(
            json.dumps({"premise": f"{prefix} {i}", "choice1": "a", "choice2": "b",
                        "question": q, "label": i % 2, "idx": i}) + "\n"
            for i, q in enumerate(["cause", "effect"])
        )  # fmt: skip

    root = tmp_path / "xcopa"  # exactly as download_data.sh leaves it (REFERENCE section 8)
    write_text(root / "train-en.jsonl", rows("train"))  # COPA's train set
    write_text(root / "val-en.jsonl", rows("val"))
    write_text(root / "val-qu.jsonl", rows("qu val"))
    write_text(root / "test-qu.jsonl", rows("qu test"))
    xcopa = registry.get("xcopa")
    train = load(xcopa, "train", "en", tmp_path).examples
    assert train["context"] == ["train 0", "train 1"]
    assert train["question"] == ["What was the cause?", "What was the effect?"]
    assert train["label"] == [0, 1]
    assert load(xcopa, "validation", "en", tmp_path).examples["context"][0] == "val 0"
    assert load(xcopa, "validation", "qu", tmp_path).examples["context"][0] == "qu val 0"
    assert load(xcopa, "test", "qu", tmp_path).examples["choices"] == [["a", "b"]] * 2


def test_local_mewslix_as_xtreme_leaves_it(registry, tmp_path: Path) -> None:
    """Per-language mention files (the originals deleted), the candidate set one up."""
    root = tmp_path / "mewslix"
    entity = {"entity_id": "Q2", "title": "Merkel", "description": "Eine Politikerin.",
              "sentence_spans": [{"start": 0, "end": 17}]}  # fmt: skip
    write_text(root / "candidate_set_entities.jsonl", json.dumps(entity) + "\n")
    for split in ("dev", "test"):
        spans = [{"start": 0, "end": 14}]
        context = {"document_id": "d", "section_id": "s", "language": "de",
                   "text": "Merkel sprach.", "sentence_spans": spans}  # fmt: skip
        mention = {"example_id": f"{split}-1", "entity_id": "Q2",
                   "mention_span": {"start": 0, "end": 6, "text": "Merkel"}}  # fmt: skip
        line = json.dumps({"context": context, "mentions": [mention]}) + "\n"
        write_text(root / "wikinews_mentions" / f"{split}-de.jsonl", line)
    mewslix = registry.get("mewslix")
    for split in ("validation", "test"):
        rows = load(mewslix, split, "de", tmp_path).examples
        assert rows["side"] == ["query", "candidate"]
        assert rows["relevant"][0] == ["Q2"] and rows["id"][1] == "Q2"


def test_every_benchmark_task_lists_its_benchmark_languages(registry: TaskRegistry) -> None:
    for spec in registry:
        for benchmark in spec.benchmarks:
            assert spec.benchmark_languages.get(benchmark), (spec.name, benchmark)
    udpos = registry.get("udpos").description
    assert "plus lt, pl, uk, wo and ro from UD v2.7" in udpos


def test_xnli_test_tsv_with_or_without_labels(registry, tmp_path: Path) -> None:
    folder = tmp_path / "xnli"
    folder.mkdir()
    xnli = registry.get("xnli")
    (folder / "test-de.tsv").write_text("Er kam .\tEr ist da .\tentailment\nA .\tB .\tneutral\n")
    labelled = load(xnli, "test", "de", tmp_path).examples
    assert labelled["label"] == [0, 1]
    (folder / "test-de.tsv").write_text("Er kam .\tEr ist da .\nA .\tB .\n")
    unlabelled = load(xnli, "test", "de", tmp_path).examples
    assert unlabelled["label"] == [-1, -1]
    (folder / "test-de.tsv").write_text("Er kam .\tEr ist da .\tentailment\textra\n")
    with pytest.raises(XstiltsError, match=r"test-de\.tsv:1: expected 2 to 3 fields"):
        load(xnli, "test", "de", tmp_path)
