"""XLM-R's text normaliser ("nmt_nfkc") as a SentencePiece precompiled charsmap.

A model file gives the per-code-point part of the map (what each single character
becomes, as XLM-R's 2019 build has it). The rest of a charsmap are rules for
sequences: a base character followed by combining marks, spelt with any of the
characters that decompose to the same letters (``A`` + U+0302 + U+0301 -> U+1EA4,
but also a full-width ``A`` or a circled one with the same marks). SentencePiece
derives them from Unicode's decompositions: for every character whose NFKD is several
code points, and whose NFC differs from that NFKD, each spelling of the NFKD with
characters that NFKD to the same code point becomes a rule to the NFC; rules that
shorter rules already imply are dropped. The Hugging Face normaliser looks only at the
shortest rule matching the start of each grapheme, so every rule counts.
"""

from __future__ import annotations

import functools
import itertools
import struct
import unicodedata
from collections import defaultdict
from collections.abc import Mapping

from xstilts.model_store.double_array import build_double_array, units_to_bytes

# Precomposed characters assigned after XLM-R's charsmap was built (Unicode 13-16):
# Dives Akuru, Tulu-Tigalari, Gurung Khema and Kirat Rai vowel signs. Python's Unicode
# data knows them; XLM-R's normaliser does not compose them.
NEWER_COMPOSITES = frozenset(
    {0x11938, 0x113C5, 0x113C7, 0x113C8, *range(0x16121, 0x16129), 0x16D68, 0x16D69, 0x16D6A}
)


@functools.cache
def _changed_characters() -> tuple[tuple[str, str, bool], ...]:
    """(character, its NFKD, whether NFKC changes it) for every character that either
    changes, over all Unicode scalar values but the noncharacters (as SentencePiece
    iterates). A scan of Python's Unicode database: seconds, so done once."""
    changed = []
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000 or cp & 0xFFFE == 0xFFFE or 0xFDD0 <= cp <= 0xFDEF:
            continue
        char = chr(cp)
        nfkd = unicodedata.normalize("NFKD", char)
        nfkc_changes = unicodedata.normalize("NFKC", char) != char
        if nfkd != char or nfkc_changes:
            changed.append((char, nfkd, nfkc_changes))
    return tuple(changed)


def nmt_nfkc_rules(single: Mapping[str, str]) -> dict[str, str]:
    """The whole charsmap: ``single`` (one character -> its normal form, for every
    character the normaliser changes) plus the sequence rules derived from it."""
    spellings: dict[str, set[str]] = defaultdict(set)  # code point -> chars that NFKD to it
    decomposed: set[str] = set()
    for char, nfkd, nfkc_changes in _changed_characters():
        if nfkc_changes and char not in single:
            continue  # a compatibility character newer than the charsmap: it is not mapped
        if len(nfkd) == 1:
            spellings[nfkd].update((char, nfkd))
        elif not any(ord(c) in NEWER_COMPOSITES for c in unicodedata.normalize("NFC", nfkd)):
            decomposed.add(nfkd)

    sequences: dict[str, str] = {}
    for nfkd in decomposed:
        nfc = unicodedata.normalize("NFC", nfkd)
        if nfc == nfkd:
            continue
        choices = [sorted(spellings.get(c, {c})) for c in nfkd]
        for spelling in itertools.product(*choices):
            key = "".join(spelling)
            if key != nfc:
                sequences[key] = nfc
    return _without_implied(dict(single), sequences)


def _without_implied(rules: dict[str, str], sequences: dict[str, str]) -> dict[str, str]:
    """Add the sequence rules, shortest first, that the rules so far do not already imply."""
    by_length: dict[int, list[str]] = defaultdict(list)
    for key in sorted(sequences):
        by_length[len(key)].append(key)
    for length in sorted(by_length):
        for key in by_length[length]:
            if _apply(rules, key, length - 1) != sequences[key]:
                rules[key] = sequences[key]
    return rules


def _apply(rules: Mapping[str, str], text: str, max_key: int) -> str:
    """Greedy longest-match rewriting with keys of at most ``max_key`` characters."""
    out, i = [], 0
    while i < len(text):
        for size in range(min(max_key, len(text) - i), 0, -1):
            replacement = rules.get(text[i : i + size])
            if replacement is not None:
                out.append(replacement)
                i += size
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def compile_charsmap(rules: Mapping[str, str]) -> bytes:
    """The precompiled blob: u32 trie size in bytes, the double-array trie, then every
    distinct replacement as NUL-terminated UTF-8 (each key maps to its replacement's offset)."""
    offsets: dict[str, int] = {}
    replacements = bytearray()
    for value in sorted(set(rules.values())):
        offsets[value] = len(replacements)
        replacements += value.encode("utf-8") + b"\0"
    trie = units_to_bytes(
        build_double_array({key.encode("utf-8"): offsets[value] for key, value in rules.items()})
    )
    return struct.pack("<I", len(trie)) + trie + bytes(replacements)
