"""How the local data builder samples: every function lands in one split by a hash of its key, candidates are
pooled per split (deduplicated by a signature) until each split has enough, then drawn with seeded randomness."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tasks.examples import SPLITS
from tasks.extract import Function


def normalise(code: str) -> str:
    return " ".join(code.split())


def stable_unit(text: str) -> float:
    """A stable number in [0, 1) from text (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def split_of(key: str, sizes: dict[str, int]) -> str:
    total = sum(sizes.values())
    u = stable_unit("split:" + key) * total
    edge = 0
    for split in SPLITS:
        edge += sizes[split]
        if u < edge:
            return split
    return SPLITS[-1]


def seeded_rng(seed: int, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so they are stable across processes.
    return random.Random(":".join([str(seed), *map(str, parts)]))


@dataclass
class Pool:
    """Candidates per split, deduplicated by a signature, filled until every split has ``needed`` of them."""

    needed: dict[str, int]
    items: dict[str, list] = field(default_factory=lambda: {s: [] for s in SPLITS})
    seen: set[str] = field(default_factory=set)
    files_read: int = 0

    def add(self, split: str, signature: str, item: object) -> None:
        if signature in self.seen:
            return
        self.seen.add(signature)
        self.items[split].append(item)

    def full(self) -> bool:
        # Files are read in a seeded random order, so the first functions found are already a random sample.
        return all(len(self.items[s]) >= self.needed[s] for s in SPLITS)

    def draw(self, split: str, seed: int, task: str) -> list:
        """``needed`` items (or all there are), drawn at random, in a stable order."""
        items = sorted(self.items[split], key=lambda it: it[0])
        n = min(self.needed[split], len(items))
        return seeded_rng(seed, task, split, "draw").sample(items, n)


def fill(
    pool: Pool, functions: Iterator[tuple[int, list[Function]]], accept: Callable[[Function], str | None]
) -> None:
    """Feed functions into the pool (``accept`` gives a dedup signature or None to reject) until it is full."""
    for i, found in functions:
        pool.files_read = i + 1
        for fn in found:
            signature = accept(fn)
            if signature is not None:
                pool.add(split_of(fn.key, pool.needed), signature, (fn.key + "\0" + fn.text, fn))
        if pool.full():
            break


# ------------------------------------------------------------------------------------------------- tasks


def needed_functions(sizes: dict[str, int]) -> dict[str, int]:
    # Defect and clone make two samples from every function (one per class).
    return {s: math.ceil(sizes[s] / 2) for s in SPLITS}
