"""The data every task yields: examples with an index, split into train/validation/test."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One sample. ``idx`` is its position in its split: the key its teacher signals are stored and looked up by."""

    idx: int
    code: str
    label: int
    code2: str | None = None  # the second function of a clone pair


@dataclass
class TaskData:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise KeyError(f"unknown split '{name}'; valid: {list(SPLITS)}")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """sha256 of the content, so caches keyed by data notice any change."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name in SPLITS:
                for ex in self.split(name):
                    h.update(json.dumps([name, ex.idx, ex.code, ex.code2, ex.label]).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint
