"""A compact double-array trie in the layout of darts-clone, the trie inside a
SentencePiece "precompiled charsmap" (and so inside a Hugging Face tokenizer.json).

Each unit is a little-endian u32:

- bits 0-7: the label (the key byte that leads to this unit); bit 31 marks a value unit;
- bit 8: the node has a value (a key ends here), stored in the unit at ``base ^ 0``;
- bits 10-30: the offset to the node's base (``base = position ^ offset``), shifted
  left by 8 more bits when bit 9 is set;
- a value unit holds ``(1 << 31) | value``.

A child with label ``c`` lives at ``base ^ c``. Identical subtrees are stored once (the
trie is folded into a DAWG, as darts-clone does), and every base is used by one
distinct subtree only, so a label check can never succeed through a foreign node.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

BLOCK = 256
SEARCH_BLOCKS = 16  # open blocks searched for a free base before a new one is added
_MAX_OFFSET = 1 << 29


@dataclass
class _Node:
    value: int | None = None
    children: dict[int, _Node] = field(default_factory=dict)


def build_double_array(entries: Mapping[bytes, int]) -> list[int]:
    """The units of a double array mapping each key (non-empty, no NUL byte) to its
    value (0 <= value < 2**31)."""
    if not entries:
        raise ValueError("a double array needs at least one key")
    root = _Node()
    for key, value in entries.items():
        if not key or 0 in key:
            raise ValueError(f"double-array keys must be non-empty and NUL-free: {key!r}")
        if not 0 <= value < 1 << 31:
            raise ValueError(f"double-array values must fit in 31 bits: {value}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value
    shapes: dict[tuple, int] = {}
    root_id = _intern(root, shapes)
    layout = {shape_id: shape for shape, shape_id in shapes.items()}
    return _Placer(layout).place(root_id)


def _intern(node: _Node, shapes: dict[tuple, int]) -> int:
    """An id per distinct subtree: equal ids mean equal keys below and equal values."""
    # Iterative post-order: tries of a few hundred thousand keys are shallow, but
    # recursion would still be the slowest part of the build.
    stack: list[tuple[_Node, bool]] = [(node, False)]
    ids: dict[int, int] = {}
    while stack:
        current, expanded = stack.pop()
        if not expanded:
            stack.append((current, True))
            stack.extend((child, False) for child in current.children.values())
            continue
        shape = (
            current.value,
            tuple((label, ids[id(child)]) for label, child in sorted(current.children.items())),
        )
        ids[id(current)] = shapes.setdefault(shape, len(shapes))
    return ids[id(node)]


class _Placer:
    """Lays distinct subtrees out in 256-unit blocks, first fit among the last open ones."""

    def __init__(self, layout: dict[int, tuple]) -> None:
        self.layout = layout
        self.units: list[int] = []
        self.free_masks: list[int] = []  # per block: bit i set = unit i of the block free
        self.used_bases: set[int] = set()
        self.base_of: dict[int, int] = {}

    def place(self, root_id: int) -> list[int]:
        self._grow()
        self._take(0)
        pending = [(0, root_id)]
        while pending:
            position, shape_id = pending.pop()
            base = self.base_of.get(shape_id)
            if base is None:
                base = self._settle(shape_id, pending)
            self.units[position] |= _offset_bits(position ^ base)
            if self.layout[shape_id][0] is not None:
                self.units[position] |= 1 << 8
        return self.units

    def _settle(self, shape_id: int, pending: list[tuple[int, int]]) -> int:
        """Find a base for a subtree, write its value and child labels, queue its children."""
        value, children = self.layout[shape_id]
        labels = [label for label, _ in children]
        if value is not None:
            labels.insert(0, 0)
        base = self._find_base(labels)
        self.used_bases.add(base)
        self.base_of[shape_id] = base
        if value is not None:
            self._take(base)
            self.units[base] = (1 << 31) | value
        for label, child_id in children:
            self._take(base ^ label)
            self.units[base ^ label] = label
            pending.append((base ^ label, child_id))
        return base

    def _find_base(self, labels: list[int]) -> int:
        first = len(self.free_masks) - SEARCH_BLOCKS
        for block in range(max(first, 0), len(self.free_masks)):
            found = self._base_in_block(block, labels)
            if found is not None:
                return found
        self._grow()
        found = self._base_in_block(len(self.free_masks) - 1, labels)
        assert found is not None, "an empty block fits any set of labels"
        return found

    def _base_in_block(self, block: int, labels: list[int]) -> int | None:
        mask = self.free_masks[block]
        lead = labels[0]
        candidates = mask
        while candidates:
            free = (candidates & -candidates).bit_length() - 1
            candidates &= candidates - 1
            low = free ^ lead
            base = block * BLOCK + low
            if base in self.used_bases:
                continue
            if all(mask >> (low ^ label) & 1 for label in labels):
                return base
        return None

    def _grow(self) -> None:
        self.units.extend([0] * BLOCK)
        self.free_masks.append((1 << BLOCK) - 1)

    def _take(self, position: int) -> None:
        block, index = divmod(position, BLOCK)
        self.free_masks[block] &= ~(1 << index)


def _offset_bits(offset: int) -> int:
    if offset < 1 << 21:
        return offset << 10
    if offset >= _MAX_OFFSET or offset & 0xFF:
        raise ValueError(f"double-array offset {offset} cannot be encoded")
    return (offset >> 8) << 10 | 1 << 9


def units_to_bytes(units: list[int]) -> bytes:
    return struct.pack(f"<{len(units)}I", *units)
