"""Row gathers for ``CachedTeacher``, vectorised: one numpy fancy-index per shard and field, no Python per sample.

A batch's samples may sit in several shards; each shard's rows are read with one ``take`` (per-sample fields) or
one flat index built from the samples' offsets (token-level, ragged fields), and scattered into the batch buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ShardLike(Protocol):
    start: int
    end: int
    fields: dict[str, np.ndarray]


def locate(starts: np.ndarray, indices: np.ndarray, n: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(shard number, row within the shard) of every index; IndexError naming the first one outside the split."""
    indices = np.asarray(indices, dtype=np.int64)
    bad = (indices < 0) | (indices >= n)
    if bad.any():
        raise IndexError(f"sample {int(indices[bad][0])} is outside the {split} split (size {n})")
    shard = np.searchsorted(starts, indices, side="right") - 1
    return shard, indices - starts[shard]


def _groups(shard_ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Batch positions per shard (a handful of shards per batch at most)."""
    return [(int(s), np.flatnonzero(shard_ids == s)) for s in np.unique(shard_ids)]


def gather_rows(shards: Sequence[ShardLike], key: str, shard_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[B, ...]``: field ``key``'s row ``rows[b]`` of shard ``shard_ids[b]``, in batch order."""
    first = shards[int(shard_ids[0])].fields[key]
    out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    for s, pos in _groups(shard_ids):
        out[pos] = np.take(shards[s].fields[key], rows[pos], axis=0)
    return out


def ragged_spans(
    shards: Sequence[ShardLike], shard_ids: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's first token row in its shard and its token count."""
    begin = np.empty(len(rows), dtype=np.int64)
    length = np.empty(len(rows), dtype=np.int64)
    for s, pos in _groups(shard_ids):
        offsets = shards[s].fields["offsets"]
        begin[pos] = offsets[rows[pos]]
        length[pos] = offsets[rows[pos] + 1] - begin[pos]
    return begin, length


def gather_ragged(
    shards: Sequence[ShardLike],
    key: str,
    shard_ids: np.ndarray,
    begin: np.ndarray,
    length: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``[B, max(length), ...]``: sample b's ``length[b]`` token rows from ``begin[b]``, zero-padded after them.

    ``out`` (e.g. a pinned buffer's numpy view) receives the rows when given; it must be zero past each length."""
    first = shards[int(shard_ids[0])].fields[key]
    width = int(length.max()) if len(length) else 0
    if out is None:
        out = np.zeros((len(length), width, *first.shape[1:]), dtype=first.dtype)
    for s, pos in _groups(shard_ids):
        lens = length[pos]
        total = int(lens.sum())
        # Flat row numbers of every token of these samples, and where each lands in the batch buffer.
        starts = np.repeat(np.cumsum(lens) - lens, lens)
        within = np.arange(total, dtype=np.int64) - starts
        src = np.repeat(begin[pos], lens) + within
        dst = np.repeat(pos, lens)
        out[dst, within] = np.take(shards[s].fields[key], src, axis=0)
    return out


def token_mask(length: np.ndarray) -> np.ndarray:
    """``[B, max(length)]`` int64: 1 on each sample's real tokens."""
    width = int(length.max()) if len(length) else 0
    return (np.arange(width)[None, :] < length[:, None]).astype(np.int64)
