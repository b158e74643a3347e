"""What every task yields: examples with an index, split into train/validation/test, and the data seed's sample.

``Example`` and ``TaskData`` are the records a trial trains on (``tasks.base`` re-exports them, the documented
import path). ``sample_fraction`` draws clone detection's seeded 10% hub sample; the seed it takes is the study's
*data* seed, never a trial's seed, so every trial of a study sees the same sample (``tasks.load_task_data``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")
# The file names a local task folder may give each split, in order of preference: the one list every loader,
# check and data key reads (``split_path``). Validation may be CodeXGLUE's ``valid.jsonl`` or CuBERT's (and its hub
# copy's) ``dev.jsonl``; a folder holding ``validation.jsonl`` reads (and hashes) that one, as it always did.
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.jsonl",),
    "validation": ("validation.jsonl", "valid.jsonl", "dev.jsonl"),
    "test": ("test.jsonl",),
}
# A score at most its majority baseline plus this margin is no finding (a constant prediction does as well): the
# analysis flags such runs "degenerate" and the transfer check counts them.
DEGENERATE_MARGIN = 0.005


def split_path(folder: Path, split: str) -> Path | None:
    """The file holding ``split`` in ``folder`` (the first of ``SPLIT_FILES[split]`` that is there), or None."""
    return next((folder / n for n in SPLIT_FILES[split] if (folder / n).is_file()), None)


@dataclass(frozen=True)
class Example:
    """One sample. ``idx`` is its position in its split: the key its teacher signals are stored and looked up by.
    ``id`` is the dataset's own id of the record when it has one (Devign's ``idx``; BigCloneBench's pair of ids as
    ``"id1<TAB>id2"``), as text: what CodeXGLUE's evaluators join predictions on. It is not part of the content
    fingerprint (a cache keyed by content serves the same code and labels whatever their ids)."""

    idx: int
    code: str
    label: int
    code2: str | None = None  # the second function of a clone pair
    id: str | None = None


def record_id(record: object, fields: tuple[str, ...]) -> str | None:
    """A record's own id from its ``fields`` (text or integers, joined by a tab), or None when it lacks one of them
    or one is not text or a whole number: an id is carried when it is there, never required."""
    if not fields or not isinstance(record, dict):
        return None
    values = [record.get(f) for f in fields]
    if any(isinstance(v, bool) or not isinstance(v, str | int | np.integer) for v in values):
        return None
    return "\t".join(str(v) for v in values)


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


class RecordError(ValueError):
    """A record that does not fit the task's schema (missing field, wrong type, unknown label)."""


def normalise_code(code: str) -> str:
    """Whitespace collapsed to single spaces, as CodeXGLUE's preprocessing does."""
    return " ".join(code.split())


def code_field(record: dict, name: str) -> str:
    """A record's code field, normalised; RecordError for one that is not text, or holds an unpaired surrogate
    (valid JSON, ``"\\ud800"``, that no tokenizer can encode: scraped code sometimes has one)."""
    value = record[name]
    if not isinstance(value, str):
        raise RecordError(f"field '{name}' must be a string of code, got {type(value).__name__}")
    try:
        if not value.isascii():  # the common case costs no copy
            value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(
            f"field '{name}' holds an unpaired surrogate \\u{ord(value[exc.start]):04x} at character "
            f"{exc.start + 1} (a \\ud800-\\udfff escape without its pair); remove or fix it"
        ) from None
    return normalise_code(value)


def sample_size(n: int, fraction: float) -> int:
    """How many rows ``sample_fraction(n, fraction, seed)`` draws, whatever the seed (a plan's sizes read this)."""
    return 0 if n == 0 else max(1, round(n * fraction))


def sample_fraction(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``fraction`` of ``range(n)`` (at least one row when ``n > 0``).

    CodeXGLUE trains and validates clone detection on a 10% sample of BigCloneBench; the seed (a study's data
    seed) makes the sample the same on every machine and for every trial.
    """
    if not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"sample_fraction: n must be a non-negative int, got {n!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"sample_fraction: fraction must be in (0, 1], got {fraction!r}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = sample_size(n, fraction)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (
        not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
