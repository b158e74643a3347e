"""Token blocks for causal-LM training: files concatenated and cut into fixed-length blocks, as CodeXGLUE does.

CodeXGLUE's ``finetuneDataset`` encodes every preprocessed file (``<s> ... </s>``), concatenates all ids into one
stream and cuts it into non-overlapping ``block_size`` windows, dropping the remainder; a training sample is a block
that may span files. ``make_blocks`` does the same (every full block; CodeXGLUE's ``range(0, n - block, block)`` also
drops a last block that ends exactly at the stream's end, an off-by-one we do not copy). Blocks are full, so there
is no padding in training; ``LMBlocks`` still carries a mask, so padded blocks (``keep_remainder=True``, for a split
shorter than one block) work with every loss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = -100  # labels at padding: the LM loss and distil's CLM term skip them


@dataclass
class LMBlocks:
    """``ids`` ``[n, block_size]`` (long) and ``mask`` ``[n, block_size]`` (1 = real token)."""

    ids: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.ids.shape != self.mask.shape or self.ids.dim() != 2:
            raise ValueError(
                f"ids {tuple(self.ids.shape)} and mask {tuple(self.mask.shape)} must be equal [n, block]"
            )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def block_size(self) -> int:
        return int(self.ids.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())

    def batch(self, indices: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """(input_ids, attention_mask, labels) of the blocks at ``indices``; labels are the ids, -100 at padding."""
        idx = indices.cpu()
        ids, mask = self.ids[idx], self.mask[idx]
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        return ids.to(device), mask.to(device), labels.to(device)

    def fingerprint(self) -> str:
        """sha256 over the block ids and mask: the cache key's data part (signals are looked up by block index)."""
        h = hashlib.sha256()
        h.update(str(tuple(self.ids.shape)).encode())
        h.update(self.ids.to(torch.int64).numpy().tobytes())
        h.update(self.mask.to(torch.int8).numpy().tobytes())
        return h.hexdigest()


class TooFewTokensError(ValueError):
    """A split too small for one block: the user's data or ``block_size`` to change, one ``error:`` line."""

    user_error = True


def make_blocks(
    ids_per_file: Sequence[Sequence[int]], block_size: int, pad_id: int = 0, keep_remainder: bool = False
) -> LMBlocks:
    """Concatenate ``ids_per_file`` and cut into ``block_size`` blocks; the remainder is dropped unless
    ``keep_remainder`` (then it becomes a last, padded block). Raises ValueError when no block results."""
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2 (one prediction needs two tokens), got {block_size}")
    stream = torch.tensor([i for ids in ids_per_file for i in ids], dtype=torch.long)
    n_full = len(stream) // block_size
    ids = stream[: n_full * block_size].view(n_full, block_size)
    mask = torch.ones_like(ids)
    rest = stream[n_full * block_size :]
    if keep_remainder and len(rest) > 1:
        pad = torch.full((1, block_size), pad_id, dtype=torch.long)
        pad[0, : len(rest)] = rest
        pad_mask = torch.zeros((1, block_size), dtype=torch.long)
        pad_mask[0, : len(rest)] = 1
        ids, mask = torch.cat([ids, pad]), torch.cat([mask, pad_mask])
    if len(ids) == 0:
        raise TooFewTokensError(
            f"{len(stream)} tokens make no block of {block_size}: use more files or a smaller block_size"
        )
    return LMBlocks(ids, mask)
