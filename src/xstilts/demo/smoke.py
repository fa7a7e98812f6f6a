"""The smoke demo (``xstilts demo --smoke``): the whole pipeline on generated data and
a tiny untrained encoder, in seconds.

It generates a small synthetic four-language paraphrase task (the target) and an
English NLI-style task (the intermediate), writes them as ordinary JSON-lines
files with a user task file, and runs the baseline and the intermediate-task
experiment through the same code path as any real run. The numbers say that
the machinery works, not anything about transfer.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from xstilts.config import ExperimentConfig, parse_config

LANGUAGES = ("en", "de", "fr", "es")

# concept -> (en, de, fr, es)
NOUNS = {
    "dog": ("dog", "Hund", "chien", "perro"),
    "cat": ("cat", "Katze", "chat", "gato"),
    "bird": ("bird", "Vogel", "oiseau", "pájaro"),
    "horse": ("horse", "Pferd", "cheval", "caballo"),
    "child": ("child", "Kind", "enfant", "niño"),
    "teacher": ("teacher", "Lehrer", "professeur", "maestro"),
    "doctor": ("doctor", "Arzt", "médecin", "médico"),
    "farmer": ("farmer", "Bauer", "fermier", "granjero"),
    "friend": ("friend", "Freund", "ami", "amigo"),
    "baker": ("baker", "Bäcker", "boulanger", "panadero"),
}
VERBS = {
    "sees": ("sees", "sieht", "voit", "ve"),
    "follows": ("follows", "folgt", "suit", "sigue"),
    "helps": ("helps", "hilft", "aide", "ayuda"),
    "finds": ("finds", "findet", "trouve", "encuentra"),
    "calls": ("calls", "ruft", "appelle", "llama"),
    "visits": ("visits", "besucht", "visite", "visita"),
}
ADJECTIVES = {
    "old": ("old", "alte", "vieux", "viejo"),
    "young": ("young", "junge", "jeune", "joven"),
    "big": ("big", "große", "grand", "grande"),
    "small": ("small", "kleine", "petit", "pequeño"),
    "happy": ("happy", "glückliche", "heureux", "feliz"),
    "tired": ("tired", "müde", "fatigué", "cansado"),
}
ARTICLE = ("the", "der", "le", "el")
PLACES = {
    "park": ("in the park", "im Park", "dans le parc", "en el parque"),
    "city": ("in the city", "in der Stadt", "dans la ville", "en la ciudad"),
    "garden": ("in the garden", "im Garten", "dans le jardin", "en el jardín"),
}


@dataclass(frozen=True)
class Event:
    adjective: str
    subject: str
    verb: str
    obj: str
    place: str | None

    def render(self, lang: str, with_adjective: bool = True) -> str:
        i = LANGUAGES.index(lang)
        words = [ARTICLE[i]]
        if with_adjective:
            words.append(ADJECTIVES[self.adjective][i])
        words += [NOUNS[self.subject][i], VERBS[self.verb][i], ARTICLE[i], NOUNS[self.obj][i]]
        if self.place is not None:
            words.append(PLACES[self.place][i])
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."


def random_event(rng: random.Random) -> Event:
    subject, obj = rng.sample(sorted(NOUNS), 2)
    place = rng.choice([None, *sorted(PLACES)])
    return Event(rng.choice(sorted(ADJECTIVES)), subject, rng.choice(sorted(VERBS)), obj, place)


def paraphrase_example(rng: random.Random, lang: str) -> dict[str, object]:
    """PAWS-style: same words in a different role order is not a paraphrase."""
    event = random_event(rng)
    if rng.random() < 0.5:
        other, label = event, 1
        second = other.render(lang, with_adjective=rng.random() < 0.5)
    else:
        swapped = Event(event.adjective, event.obj, event.verb, event.subject, event.place)
        changed = Event(
            event.adjective,
            event.subject,
            rng.choice(sorted(set(VERBS) - {event.verb})),
            event.obj,
            event.place,
        )
        other, label = rng.choice([swapped, changed]), 0
        second = other.render(lang)
    return {"sentence1": event.render(lang), "sentence2": second, "label": label}


def nli_example(rng: random.Random) -> dict[str, object]:
    premise = random_event(rng)
    kind = rng.choice(["entailment", "neutral", "contradiction"])
    if kind == "entailment":
        hypothesis = premise.render("en", with_adjective=False)
    elif kind == "neutral":
        adjective = rng.choice(sorted(set(ADJECTIVES) - {premise.adjective}))
        hypothesis = Event(adjective, premise.subject, premise.verb, premise.obj, None).render("en")
        premise_text = premise.render("en", with_adjective=False)
        return {"premise": premise_text, "hypothesis": hypothesis, "label": kind}
    else:
        verb = rng.choice(sorted(set(VERBS) - {premise.verb}))
        hypothesis = Event(premise.adjective, premise.subject, verb, premise.obj, None).render("en")
    return {"premise": premise.render("en"), "hypothesis": hypothesis, "label": kind}


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


TASKS_YAML = {
    "tasks": [
        {
            "name": "demo_paraphrase",
            "description": "Synthetic PAWS-style paraphrase detection in four languages.",
            "family": "paraphrase",
            "format": "classification",
            "labels": ["0", "1"],
            "languages": list(LANGUAGES),
            "epochs": 4,
            "max_length": 64,
            "splits": {
                split: {
                    "local": {
                        "path": f"demo/paraphrase-{split}-{{lang}}.jsonl",
                        "columns": {"text_a": "sentence1", "text_b": "sentence2"},
                    }
                }
                for split in ("train", "validation", "test")
            },
        },
        {
            "name": "demo_nli",
            "description": "Synthetic English NLI, the demo's intermediate task.",
            "family": "nli",
            "format": "classification",
            "labels": ["entailment", "neutral", "contradiction"],
            "epochs": 4,
            "max_length": 64,
            "splits": {
                split: {
                    "local": {
                        "path": f"demo/nli-{split}.jsonl",
                        "columns": {"text_a": "premise", "text_b": "hypothesis"},
                    }
                }
                for split in ("train", "validation")
            },
        },
    ]
}


def write_demo_data(data_dir: Path, seed: int = 13) -> Path:
    """Generate the demo's files under ``data_dir``; return its task file."""
    rng = random.Random(seed)
    sizes = {"train": 2000, "validation": 300, "test": 300}
    for split, size in sizes.items():
        langs = ("en",) if split != "test" else LANGUAGES
        for lang in langs:
            rows = [paraphrase_example(rng, lang) for _ in range(size)]
            _write_jsonl(data_dir / "demo" / f"paraphrase-{split}-{lang}.jsonl", rows)
    for split in ("train", "validation"):
        rows = [nli_example(rng) for _ in range(sizes[split])]
        _write_jsonl(data_dir / "demo" / f"nli-{split}.jsonl", rows)
    task_file = data_dir / "demo-tasks.yaml"
    task_file.write_text(yaml.safe_dump(TASKS_YAML, sort_keys=False, allow_unicode=True), "utf-8")
    return task_file


def demo_configs(data_dir: Path, task_file: Path) -> tuple[ExperimentConfig, ExperimentConfig]:
    """The baseline and the intermediate-task experiment of the demo."""
    training = {
        "learning_rate": 1e-3,
        "batch_size": 32,
        "warmup_fraction": 0.1,
        "eval_every_steps": 50,
    }
    base = {
        "seed": 1,
        "model": {"tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2}},
        "target": {"task": "demo_paraphrase", "training": training},
        "data": {
            "source": "local",
            "data_dir": str(data_dir),
            "task_files": [str(task_file)],
            "cache_dir": str(data_dir.parent / "cache"),
        },
    }
    baseline = parse_config({**base, "name": "demo-baseline"}, source="demo")
    with_intermediate = parse_config(
        {
            **base,
            "name": "demo-intermediate",
            "intermediate": {"tasks": ["demo_nli"], "training": training},
        },
        source="demo",
    )
    return baseline, with_intermediate


def all_demo_words() -> list[str]:
    """Every word form the demo writes (the shipped tiny tokenizer is trained on them)."""
    words = list(ARTICLE)
    for table in (NOUNS, VERBS, ADJECTIVES, PLACES):
        for forms in table.values():
            words.extend(forms)
    return words
