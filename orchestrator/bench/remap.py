"""A teacher source read through an index map: a student's sample ``i`` gets the teacher's row ``map[i]``.

Two uses in the knowledge-transfer check (``transfer.py``), both over one cache built on all training inputs:

* **the labelled part** (the same-labels arm): the student trains on ``keep`` (sorted positions in the training
  split), so its sample ``j`` is the cache's row ``keep[j]``;
* **the placebo**: ``map`` is a seeded permutation of the training split, so each sample gets another sample's
  teacher row. Every signal of a row moves together (logits, [CLS] states, token states, the token mask, CKD's Gram
  numbers: they are all gathered by the row index), so the student sees the teacher's output distribution over
  the inputs but none of its knowledge about *this* input.

It wraps the cache's reader (``CachedTeacher.fetch`` / ``finish``), so the trainer still reads the next batch on its
reader thread (``prefetch.prefetchable``). Splits without a map are read as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kd_methods import SignalSpec, TeacherSignals


def placebo_permutation(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (a derangement), so no sample keeps its own row."""
    if n < 2:
        raise ValueError(f"a placebo needs at least 2 samples to permute, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    fixed = np.flatnonzero(perm == np.arange(n))
    # swap each fixed point with its neighbour's target (cyclically): still a permutation, no fixed point left
    for i in fixed:
        j = (i + 1) % n
        perm[i], perm[j] = perm[j], perm[i]
    if np.any(perm == np.arange(n)):  # only possible for tiny n; a cyclic shift is a derangement
        perm = np.roll(np.arange(n), 1)
    return perm.astype(np.int64)


class RemappedTeacher:
    """``TeacherSource`` over ``inner`` with ``maps[split][i]`` the inner row of sample ``i`` (see module doc)."""

    def __init__(self, inner: Any, maps: Mapping[str, np.ndarray]) -> None:
        self.inner = inner
        self.maps = {split: np.asarray(m, dtype=np.int64) for split, m in maps.items()}
        for split, m in self.maps.items():
            if m.ndim != 1:
                raise ValueError(f"the index map of split '{split}' must be 1-D, got shape {m.shape}")

    def _rows(self, split: str, indices: Tensor | np.ndarray) -> np.ndarray:
        idx = indices.cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
        m = self.maps.get(split)
        if m is None:
            return idx
        if idx.size and (idx.min() < 0 or idx.max() >= len(m)):
            raise IndexError(f"sample {int(idx.max())} is outside the mapped {split} split (size {len(m)})")
        return m[idx]

    def fetch(self, split: str, indices: Tensor | np.ndarray, spec: SignalSpec) -> TeacherSignals:
        return self.inner.fetch(split, self._rows(split, indices), spec)

    def finish(self, fetched: TeacherSignals, device: torch.device | str = "cpu") -> TeacherSignals:
        return self.inner.finish(fetched, device)

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        return self.finish(self.fetch(split, indices, spec))

    def check_data(self, fingerprint: str) -> None:
        """The inner cache's check: it must have been built from the data the map refers to."""
        self.inner.check_data(fingerprint)
