"""Does a cached feature target vary between samples? PKD's check on the [CLS] states a cache holds.

PKD matches the student's L2-normalised intermediate [CLS] states to the teacher's. When one coordinate of the
teacher's [CLS] state dwarfs the rest in every input (MiniLM's coordinate 99 holds ~98% of its squared norm at
layers 1-4: docs/METHODS.md, "Why the target is constant"), every normalised target points the same way: the term
asks every student for one constant vector and passes on nothing per sample. A study warns when the cache it built
holds such a layer, and records the figures on its ``teacher_cache`` run; the transfer check reports them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Above this mean pairwise cosine the normalised targets are one vector for practical purposes (MiniLM: 1.0000 at
# layers 1-3, 0.9996 at layer 4, where PKD's term cost the check's students 8-12 points; 0.979 at layer 5).
CONSTANT_COS = 0.999


def mean_pairwise_cos(x: np.ndarray) -> float:
    """Mean cosine between different rows of ``x`` [B, H] (1: one direction for every row)."""
    x = np.asarray(x, dtype=np.float64)
    n = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    b = n.shape[0]
    if b < 2:
        return float("nan")
    return float(((n @ n.T).sum() - b) / (b * (b - 1)))


def cls_pairwise_cos(path: str | Path, rows: int = 256) -> dict[int, float]:
    """Per teacher layer whose [CLS] state the cache holds: the mean pairwise cosine over its first ``rows``
    training inputs (the rows PKD trains on). Empty when the cache holds no [CLS] states."""
    from orchestrator.cache.serve import _manifest

    path = Path(path)
    shards = _manifest(path)["shards"]["train"]
    out: dict[int, float] = {}
    for name in sorted(shards[0]["files"]) if shards else []:
        if not name.startswith("cls."):
            continue
        parts, left = [], rows
        for shard in shards:  # the first rows, across shards when one shard holds fewer
            arr = np.load(path / shard["dir"] / f"{name}.npy", mmap_mode="r")
            parts.append(np.asarray(arr[:left], dtype=np.float32))
            left -= len(parts[-1])
            if left <= 0:
                break
        out[int(name.split(".", 1)[1])] = mean_pairwise_cos(np.concatenate(parts))
    return out


def constant_layers(cos: dict[int, float], threshold: float = CONSTANT_COS) -> list[int]:
    return sorted(layer for layer, c in cos.items() if c >= threshold)


def constant_target_warning(where: str, cos: dict[int, float]) -> str | None:
    """One console line when a cached [CLS] layer is the same direction for every input, else None."""
    same = constant_layers(cos)
    if not same:
        return None
    figures = ", ".join(f"layer {layer} {cos[layer]:.4f}" for layer in same)
    return (
        f"warning: teacher cache {where}: the teacher's [CLS] state points the same way for every input "
        f"(mean pairwise cosine {figures}; >= {CONSTANT_COS}): PKD's feature term asks each student for one "
        "constant vector there and passes on no per-sample knowledge (docs/METHODS.md, 'Why the target is constant')"
    )
