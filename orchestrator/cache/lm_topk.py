"""``cached-topk``: the compact, APPROXIMATE LM cache signal (docs/COMPLETION_STUDY.md, "Study file").

Per position: the teacher's k largest logits (stored in the cache dtype) with their token ids (uint16 when the
vocabulary fits, else int32), and the exact log-sum-exp of the full logits at each listed temperature (float32).
With the exact LSE the kept probabilities ``exp(z_k / T - LSE_T)`` are the teacher's true ones, and the mass
outside the top k, ``1 - sum_k p_k``, is known rather than guessed; what is lost is the tail's *shape*. The distil
loss then compares the two distributions over k + 1 outcomes (the kept tokens and one "rest" bucket): that KL is
a lower bound on the full KL (coarse-graining never increases a divergence), so it is biased, and labelled
``approximate`` in the manifest. The mass kept at each temperature is recorded (``manifest["mass_kept"]``); at
T = 2 it is much lower than at T = 1 (a T = 2 target is p^(1/2) renormalised, which lifts the tail).

Storage per position: k x (2 + 2) bytes + 4 x |T| (k = 64, T in {1, 2}: 264 B, against 1,536 B for fp16 h at
width 768).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from kd_methods.distil import TOPK_IDS, TOPK_LOGITS, TOPK_LSE, TOPK_TEMPERATURES


def topk_fields(
    logits: Tensor, mask: Tensor, k: int, temperatures: Sequence[float]
) -> tuple[dict[str, Tensor], np.ndarray]:
    """The stored fields of one batch (``topk_ids``, ``topk_logits``, ``lse``) and, per temperature, the kept
    probability mass summed over the real (mask = 1) positions."""
    z = logits.float()
    if k > z.shape[-1]:
        raise ValueError(f"topk {k} is larger than the vocabulary ({z.shape[-1]})")
    values, ids = z.topk(k, dim=-1)
    lse = torch.stack([torch.logsumexp(z / t, dim=-1) for t in temperatures], dim=-1)
    kept = torch.stack(
        [torch.exp(values / t - lse[..., i : i + 1]).sum(-1) for i, t in enumerate(temperatures)], dim=-1
    )
    real = mask.bool()
    # int32 here; the shard writer stores ids as uint16 when the vocabulary fits (``id_dtype``).
    fields = {"topk_ids": ids.to(torch.int32), "topk_logits": values, "lse": lse}
    return fields, kept[real].sum(0).double().cpu().numpy()


def id_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 65536 else np.int32


def topk_signals(ids: np.ndarray, logits: np.ndarray, lse: np.ndarray, temperatures: Sequence[float]) -> dict:
    """The reader's ``extras`` for a batch: ids (long), logits and LSE (float32), the temperatures listed."""
    return {
        TOPK_IDS: torch.from_numpy(ids.astype(np.int64)),
        TOPK_LOGITS: torch.from_numpy(logits.astype(np.float32)),
        TOPK_LSE: torch.from_numpy(lse.astype(np.float32)),
        TOPK_TEMPERATURES: torch.tensor(list(temperatures), dtype=torch.float32),
    }
