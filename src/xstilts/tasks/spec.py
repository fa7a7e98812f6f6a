"""The declarative description of a task: what it is, where its data lives, how it is scored."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

SplitName = Literal["train", "validation", "test"]
SourceMode = Literal["hub", "local"]
FileFormat = Literal[
    "jsonl",
    "jsonl_labels",
    "json",
    "tsv",
    "csv",
    "parquet",
    "text",
    "squad",
    "conll",
    "conllu",
    "tatoeba",
    "bucc",
    "squad_sentences",
    "xquad_r",
    "mewslix_pairs",
    "mewslix_mentions",
]
LANG_PLACEHOLDER = "{lang}"
PLAIN_LANGUAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
PLAIN_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
CODE_PLACEHOLDER = "{code}"


class Holdout(BaseModel):
    """A deterministic part of a source's examples, chosen by a hash of each example's
    id (its position when it has none): one file serves two splits without overlap.

    An example is held out when the first 8 bytes of SHA-256 of its id, read as a
    fraction of 2**64, fall below ``fraction``; ``part`` keeps those (``held_out``) or
    all others (``rest``). The choice depends on the id alone: not on the order of the
    file, the other examples, a seed or ``max_examples``. Examples must stand alone
    (not retrieval's source and target sides, which would lose their pairs).
    """

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(gt=0, lt=1, description="Share of the examples held out.")
    part: Literal["held_out", "rest"] = Field(
        description="held_out: keep the held-out share; rest: keep every other example."
    )

    def keeps(self, example_id: str) -> bool:
        digest = hashlib.sha256(example_id.encode("utf-8")).digest()
        held_out = int.from_bytes(digest[:8], "big") < self.fraction * 2**64
        return held_out == (self.part == "held_out")

    def complements(self, other: Holdout) -> bool:
        """Whether the two keep disjoint parts of the same examples."""
        return self.fraction == other.fraction and self.part != other.part


class DataSource(BaseModel):
    """One place examples come from: a Hugging Face hub dataset or a local file.

    Any string field may contain ``{lang}``, filled in with the language being loaded,
    and ``{code}``, the task's name for that language in file names and hub configs.
    ``columns`` maps the format's field names to the source's columns; a dotted name
    (``choices.text``) reaches into a nested column, and a list gathers several
    columns into one list-valued field (the answer options of multiple choice).
    """

    model_config = ConfigDict(extra="forbid")

    hub: str | None = Field(None, description="Dataset id on the Hugging Face hub.")
    config: str | None = Field(None, description="Hub dataset configuration name.")
    split: str | None = Field(None, description="Hub split name.")
    revision: str | None = Field(
        None,
        description="Hub branch, tag or commit; 'refs/convert/parquet' reads the hub's "
        "parquet copy of a dataset whose main branch is a loading script.",
    )
    path: list[str] | None = Field(
        None, description="Local file; several candidates are tried in order."
    )
    file_format: FileFormat | None = Field(None, description="Inferred from the suffix if unset.")
    header: bool = Field(True, description="tsv/csv: the first line names the columns.")
    column_names: list[str] | None = Field(None, description="tsv/csv column names if no header.")
    companions: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Further files a multi-file reader needs (tatoeba, bucc, mewslix), by "
        "role: paths relative to the folder of 'path' (a list: the first that exists).",
    )
    reader_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options of the file reader."
    )
    where: dict[str, str] = Field(
        default_factory=dict, description="Keep rows whose column matches the regex."
    )
    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    label_map: dict[str, str] = Field(
        default_factory=dict, description="Raw label value -> label name of the task."
    )
    drop_labels: list[str] = Field(
        default_factory=list, description="Raw label values meaning 'no gold label': dropped."
    )
    value_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per field: raw value -> replacement text."
    )
    languages: list[str] | None = Field(
        None, description="Languages this source serves; unset means every language."
    )
    holdout: Holdout | None = Field(
        None,
        description="Keep only a deterministic hashed share of the examples (or all "
        "others): e.g. a validation split held out of a training file.",
    )

    @model_serializer(mode="wrap")
    def _without_unset_holdout(self, handler: Any) -> dict[str, Any]:
        # Unset, the key is left out of dumps: run ids and data fingerprints (computed
        # from them) stay those of sources written before the key existed.
        dumped = handler(self)
        if self.holdout is None:
            dumped.pop("holdout", None)
        return dumped

    @field_validator("path", mode="before")
    @classmethod
    def _path_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> DataSource:
        if (self.hub is None) == (self.path is None):
            raise ValueError("a data source needs exactly one of 'hub' (dataset id) or 'path'")
        return self

    @property
    def mode(self) -> SourceMode:
        return "hub" if self.hub is not None else "local"

    def for_language(self, lang: str, code: str | None = None) -> DataSource:
        """This source with ``{lang}`` and ``{code}`` filled in everywhere."""

        def fill(value: object) -> object:
            if isinstance(value, str):
                return value.replace(LANG_PLACEHOLDER, lang).replace(CODE_PLACEHOLDER, code or lang)
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            return value

        return DataSource.model_validate(fill(self.model_dump()))

    def describe(self) -> str:
        held = ""
        if self.holdout is not None:
            held = f" ({self.holdout.part} of a {self.holdout.fraction:g} hashed holdout)"
        return " or ".join(self.origins()) + held

    def origins(self) -> list[str]:
        """The underlying data this source reads: the hub split, or each candidate file."""
        if self.hub is not None:
            parts = [self.hub, self.config, self.split]
            at = f"@{self.revision}" if self.revision else ""
            return ["hub:" + "/".join(p for p in parts if p) + at]
        assert self.path is not None
        return list(self.path)

    def may_overlap(self, other: DataSource) -> bool:
        """Whether the two sources may share an example: they read the same data, their
        holdouts do not keep complementary parts of it, and their ``where`` filters do
        not select on a common column with different patterns (taken as the task's
        declaration of two subsets: regexes cannot be proven disjoint)."""
        if not set(self.origins()) & set(other.origins()):
            return False
        held = (self.holdout, other.holdout)
        if held[0] is not None and held[1] is not None and held[0].complements(held[1]):
            return False
        common = set(self.where) & set(other.where)
        return all(self.where[column] == other.where[column] for column in common)


class SplitSources(BaseModel):
    """Where one split comes from, once per source mode."""

    model_config = ConfigDict(extra="forbid")

    hub: list[DataSource] = Field(default_factory=list)
    local: list[DataSource] = Field(default_factory=list)

    @field_validator("hub", "local", mode="before")
    @classmethod
    def _as_list(cls, value: object) -> object:
        return [value] if isinstance(value, dict) else value

    def for_mode(self, mode: SourceMode) -> list[DataSource]:
        """Sources of the preferred mode, falling back to the other one if it has none."""
        preferred = self.hub if mode == "hub" else self.local
        return preferred or (self.local if mode == "hub" else self.hub)


class TaskSpec(BaseModel):
    """A task as data: adding one never means writing a class."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=rf"^{TASK_NAME.pattern}$")
    description: str = ""
    family: str = Field(description="Group for reports: nli, paraphrase, qa, commonsense, ...")
    format: str = Field(description="How examples become features: classification, ...")
    labels: list[str] = Field(default_factory=list, description="Label names, in head order.")
    label_file: str | None = Field(
        None, description="A file of label names, one per line, when the set is large (CCG)."
    )
    languages: list[str] = Field(default_factory=lambda: ["en"])
    train_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="Languages whose train splits are concatenated for training "
        "(translate-train data, multilingual MLM).",
    )
    metric: str = "accuracy"
    max_length: int = Field(256, gt=8)
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, gt=0)
    head: str | None = Field(None, description="Head-sharing group; defaults to the task name.")
    codes: dict[str, str] = Field(
        default_factory=dict, description="Language -> its name in files and hub configs."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the format (doc_stride, layer, ...)."
    )
    benchmarks: list[str] = Field(default_factory=list)
    benchmark_languages: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Benchmark name -> the languages that benchmark evaluates for this task "
        "(each a subset of 'languages', which stays the union).",
    )
    splits: dict[SplitName, SplitSources] = Field(default_factory=dict)
    origin: str = Field("built-in", description="The file the spec was read from.")
    base_dir: Path | None = Field(None, description="Relative local paths may resolve here.")

    @model_validator(mode="after")
    def _names_are_plain(self) -> TaskSpec:
        """Language codes and their file names become parts of paths (predictions, the
        feature cache, data files): letters, digits, '_', '-' (and '.' in codes) only."""
        named = {
            "languages": self.languages,
            "train_languages": self.train_languages,
            "codes": list(self.codes),
        }
        for benchmark, langs in self.benchmark_languages.items():
            named[f"benchmark_languages['{benchmark}']"] = langs
        for key, langs in named.items():
            bad = [lang for lang in langs if not PLAIN_LANGUAGE.fullmatch(lang)]
            if bad:
                raise ValueError(f"{key}: {bad[0]!r} is not a language code (letters, digits, _ -)")
        bad_codes = [code for code in self.codes.values() if not PLAIN_CODE.fullmatch(code)]
        if bad_codes:
            raise ValueError(f"codes: {bad_codes[0]!r} is not a plain name (no '/' or '..')")
        return self

    @model_validator(mode="after")
    def _benchmark_languages_known(self) -> TaskSpec:
        for benchmark, langs in self.benchmark_languages.items():
            unknown = [lang for lang in langs if lang not in self.languages]
            if unknown:
                raise ValueError(
                    f"benchmark_languages['{benchmark}']: {', '.join(unknown)} not among "
                    f"the task's languages ({', '.join(self.languages)})"
                )
        return self

    @property
    def head_name(self) -> str:
        return self.head or self.name

    def sources(self, split: SplitName, lang: str, mode: SourceMode) -> list[DataSource]:
        """The sources of ``split`` for ``lang``, with ``{lang}`` filled in.

        Sources that name ``lang`` among their languages win over generic ones.
        """
        if split not in self.splits:
            return []
        candidates = self.splits[split].for_mode(mode)
        specific = [s for s in candidates if s.languages is not None and lang in s.languages]
        chosen = specific or [s for s in candidates if s.languages is None]
        return [s.for_language(lang, self.codes.get(lang, lang)) for s in chosen]

    def shared_data(
        self, first: SplitName, second: SplitName, lang: str, mode: SourceMode
    ) -> list[str]:
        """The data two splits may share in ``lang`` (see ``DataSource.may_overlap``),
        described; empty when they are disjoint."""
        return [
            f"{a.describe()} / {b.describe()}"
            for a in self.sources(first, lang, mode)
            for b in self.sources(second, lang, mode)
            if a.may_overlap(b)
        ]

    def source_rows(self, arrow: str = " <- ") -> list[tuple[str, str, DataSource, str, str]]:
        """Every declared source, split by split, hub ones first, as the task listings
        show them: (split, mode, source, its columns as ``field <- column`` or ``-``,
        the languages it serves or ``all``)."""
        rows = []
        for split, split_sources in self.splits.items():
            for mode in ("hub", "local"):
                for source in getattr(split_sources, mode):
                    columns = ", ".join(
                        f"{field}{arrow}{'+'.join(column) if isinstance(column, list) else column}"
                        for field, column in source.columns.items()
                    )
                    only = " ".join(source.languages) if source.languages else "all"
                    rows.append((split, mode, source, columns or "-", only))
        return rows
