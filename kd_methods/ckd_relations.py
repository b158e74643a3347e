"""CKD's relations computed from Gram matrices: the word relation (WR) and layer-transforming relation (LTR) of one
model's layers, and the Gram numbers a teacher cache stores so that any student's relations follow at serve time.

Everything is computed from Gram matrices, never from difference vectors per pair or triple:
  |a - b|^2 = |a|^2 + |b|^2 - 2 a.b  and  (h_i - h_j).(h_i - h_k) = G_ii - G_ij - G_ik + G_jk,
so a layer costs one banded Gram (the 4w+1 diagonals around the main one) plus O(N w^2) scalar work. Entries where
a relation is undefined or constant are never computed (see ``window_pairs``, ``layer_triples``). The loss that
compares the relations, and how it is normalised, is in ``kd_methods/ckd.py``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods.kd import at_least_float32

# Floors for the norms and squared distances that divide: a zero vector (e.g. a padding embedding) gives cosine 0
# instead of NaN. The relative floor also absorbs the Gram formula's cancellation error for two (numerically)
# identical vectors, e.g. a BiGRU's embedding output for a repeated token, whose angle is then ~0, not noise.
_EPS = 1e-12
_REL_EPS = 1e-6


def band_gram(x: Tensor, reach: int, block: int = 64) -> Tensor:
    """Banded Gram matrix ``[B, N, 2*reach+1]``: ``out[b, i, e] = x[b, i] . x[b, i + e - reach]`` (0 off the ends).

    Blocked: each block of ``block`` rows is multiplied (one batched ``bmm``) with the ``block + 2*reach`` columns
    around it, and the band is read off that tile with a strided view. Measured on one CPU thread, forward +
    backward, B=16, reach=20: as fast as a full ``[B, N, N]`` Gram + band read at N=256 and about 1.5-2x faster at
    N=512 (it does (block + 2*reach)/N of the multiply-adds); one multiply-sum per diagonal offset was 1.5-2x
    slower than the full Gram, and an unfold + einsum 10x slower (it copies a ``[B, N, H, 2*reach+1]`` tensor).
    """
    batch, length, width = x.shape
    block = max(1, min(block, length))
    num_blocks = -(-length // block)
    padded_len = num_blocks * block
    span = block + 2 * reach
    rows = F.pad(x, (0, 0, 0, padded_len - length)).reshape(batch * num_blocks, block, width)
    # Block c's columns are positions c*block - reach .. c*block + block + reach - 1, zero outside the sequence.
    cols = F.pad(x, (0, 0, reach, reach + padded_len - length)).unfold(1, span, block)  # [B, nb, H, span]
    tile = torch.bmm(rows, cols.reshape(batch * num_blocks, width, span))  # [B*nb, block, span]
    # Row p of a tile needs its columns p .. p + 2*reach: a stride of span + 1 walks down that diagonal band.
    band = tile.as_strided((batch * num_blocks, block, 2 * reach + 1), (block * span, span + 1, 1))
    return band.reshape(batch, padded_len, 2 * reach + 1)[:, :length]


def _cosine(dot: Tensor, sq_a: Tensor, sq_b: Tensor) -> Tensor:
    return dot * torch.rsqrt(sq_a.clamp_min(_EPS) * sq_b.clamp_min(_EPS))


def _sq_dist(sq_a: Tensor, sq_b: Tensor, dot: Tensor) -> Tensor:
    """|a-b|^2 from the Gram entries, floored relative to |a|^2 + |b|^2 (see _REL_EPS)."""
    total = sq_a + sq_b
    return torch.maximum(total - 2.0 * dot, total * _REL_EPS + _EPS)


@lru_cache(maxsize=64)
def _window_index(window: int, device: str) -> tuple[Tensor, Tensor]:
    pairs = [
        (a, c) for a in range(2 * window + 1) for c in range(a + 1, 2 * window + 1) if window not in (a, c)
    ]
    index = torch.tensor(pairs, dtype=torch.long, device=device)
    return index[:, 0], index[:, 1]


def window_pairs(window: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The (j, k) window slots of the WR angle entries: ``a[p], c[p]`` in 0..2w (slot a is token i + a - w).

    Only a < c with neither slot the centre: the angle is symmetric in j, k, is undefined for j = i or k = i and
    constant for j = k, so the other entries carry no information (and would halve the speed and double a cache).
    """
    return _window_index(window, str(torch.device(device)))


@lru_cache(maxsize=64)
def _layer_index(num_layers: int, device: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    pairs = [(m, n) for m in range(num_layers) for n in range(m + 1, num_layers)]
    triples = [(v, m, n) for v in range(num_layers) for m, n in pairs if v not in (m, n)]
    pair_t = torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
    triple_t = torch.tensor(triples, dtype=torch.long, device=device).reshape(-1, 3)
    return pair_t[:, 0], pair_t[:, 1], triple_t[:, 0], triple_t[:, 1], triple_t[:, 2]


def layer_pairs(num_layers: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The (l, m) layers of the LTR distance entries: l < m."""
    return _layer_index(num_layers, str(torch.device(device)))[:2]


def layer_triples(num_layers: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """The (l, m, n) layers of the LTR angle entries (vertex l): m < n, both != l (see ``window_pairs``)."""
    return _layer_index(num_layers, str(torch.device(device)))[2:]


def word_relations(x: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """WR of one layer ``x [B, N, H]``: distance ``[B, N, 2w+1]`` and angle ``[B, N, P]``.

    Distance slot a in 0..2w is token j = i + a - w; angle entry p is the window slots ``window_pairs(w)[.][p]``.
    Entries whose j or k lie outside 0..N-1 are finite but meaningless; ``window_masks`` excludes them.
    """
    return word_relations_from_band(band_gram(at_least_float32(x), 2 * window), window)


def word_relations_from_band(band: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """WR from a layer's banded Gram ``[B, N, 4w+1]`` (``band_gram(x, 2w)``): all WR needs of the hidden states,
    which is why a teacher cache can store these 4w+1 numbers per token instead of the states themselves."""
    band = at_least_float32(band)
    w = window
    batch, length, _ = band.shape
    sq = band[..., 2 * w]  # |x_i|^2
    g_ij = band[..., w : 3 * w + 1]  # x_i . x_j for j = i-w .. i+w
    sq_j = F.pad(sq, (w, w)).unfold(1, 2 * w + 1, 1)  # |x_j|^2, [B, N, 2w+1]
    sq_i = sq.unsqueeze(-1)
    dist = 1.0 - _cosine(g_ij, sq_i, sq_j)
    inv_norm = torch.rsqrt(_sq_dist(sq_i, sq_j, g_ij))  # 1 / |x_i - x_j|
    slot_a, slot_c = window_pairs(w, band.device)
    # x_j . x_k with j = i+a-w, k = i+c-w is band row j at column (k - j) + 2w = c - a + 2w. With the rows padded
    # by w, row j is padded row i + a, so the entry sits at flat offset i*(4w+1) + a*(4w+1) + c - a + 2w: one
    # index_select (whose backward is a fast index_add) instead of an advanced-indexing gather.
    width = 4 * w + 1
    flat = F.pad(band, (0, 0, w, w)).reshape(batch, -1)
    offsets = slot_a * width + slot_c - slot_a + 2 * w
    index = (torch.arange(length, device=band.device)[:, None] * width + offsets).reshape(-1)
    g_jk = flat.index_select(1, index).reshape(batch, length, -1)  # [B, N, P]
    numerator = sq_i - g_ij.index_select(2, slot_a) - g_ij.index_select(2, slot_c) + g_jk
    angle = numerator * inv_norm.index_select(2, slot_a) * inv_norm.index_select(2, slot_c)
    return dist, angle


def layer_gram(states: list[Tensor]) -> Tensor:
    """Per-token Gram across layers: ``[B, N, L, L]`` of h^l_i . h^m_i (the layers must share one width)."""
    widths = [s.shape[-1] for s in states]
    if len(set(widths)) != 1:
        raise ValueError(f"layer relations need layers of one width, got widths {widths}")
    states = [at_least_float32(s) for s in states]
    num = len(states)
    # One dot product per layer pair (measured faster than a stack + einsum of tiny [L, H] x [H, L] matmuls).
    dots = {(a, b): torch.linalg.vecdot(states[a], states[b]) for a in range(num) for b in range(a, num)}
    gram = torch.stack([dots[min(a, b), max(a, b)] for a in range(num) for b in range(num)], dim=-1)
    return gram.unflatten(-1, (num, num))


def layer_relations(states: list[Tensor]) -> tuple[Tensor, Tensor]:
    """LTR of each token across the L layers ``states`` (``[B, N, H]`` each, one width).

    Returns distance ``[B, N, P_d]`` over ``layer_pairs(L)`` and angle ``[B, N, P_a]`` over ``layer_triples(L)``
    (between h^l - h^m and h^l - h^n), from the per-token Gram across layers.
    """
    return layer_relations_from_gram(layer_gram(states))


def layer_relations_from_gram(gram4: Tensor) -> tuple[Tensor, Tensor]:
    """LTR from the per-token layer Gram ``[B, N, L, L]`` (``layer_gram``)."""
    num = gram4.shape[-1]
    gram = at_least_float32(gram4).flatten(-2)  # [B, N, L*L]
    sq = torch.diagonal(at_least_float32(gram4), dim1=-2, dim2=-1)  # [B, N, L]
    pair_l, pair_m = layer_pairs(num, gram.device)
    sq_l, sq_m = sq.index_select(2, pair_l), sq.index_select(2, pair_m)
    dist = 1.0 - _cosine(gram.index_select(2, pair_l * num + pair_m), sq_l, sq_m)
    tri_l, tri_m, tri_n = layer_triples(num, gram.device)

    def g(a: Tensor, b: Tensor) -> Tensor:
        return gram.index_select(2, a * num + b)

    sq_t = sq.index_select(2, tri_l)
    g_lm, g_ln = g(tri_l, tri_m), g(tri_l, tri_n)
    d_lm = _sq_dist(sq_t, sq.index_select(2, tri_m), g_lm)
    d_ln = _sq_dist(sq_t, sq.index_select(2, tri_n), g_ln)
    angle = (sq_t - g_lm - g_ln + g(tri_m, tri_n)) * torch.rsqrt(d_lm * d_ln)
    return dist, angle


def teacher_grams(hidden: list[Tensor], window: int) -> tuple[Tensor, Tensor]:
    """What a teacher cache stores for CKD: per layer the banded Gram ``[B, N, L, 4w+1]`` and the per-token layer
    Gram ``[B, N, L, L]``. Any student's relations over any subset of these layers follow from them
    (``relations_from_grams``), at 4w+1 + L numbers per token and layer instead of the hidden width."""
    with torch.autocast(device_type=hidden[0].device.type, enabled=False):
        bands = torch.stack([band_gram(at_least_float32(h), 2 * window) for h in hidden], dim=2)
        return bands, layer_gram(hidden)


def relations_from_grams(bands: Tensor, gram4: Tensor, layers: list[int], window: int) -> dict[str, Tensor]:
    """CKD's relations over the stored layers at positions ``layers`` (repeats allowed), from ``teacher_grams``."""
    with torch.autocast(device_type=bands.device.type, enabled=False):
        word = [word_relations_from_band(bands[:, :, i], window) for i in layers]
        index = torch.tensor(layers, device=gram4.device)
        sub = gram4.index_select(2, index).index_select(3, index)
        ltr_dist, ltr_angle = layer_relations_from_gram(sub)
    return {
        "wr_dist": torch.stack([d for d, _ in word], dim=2),
        "wr_angle": torch.stack([a for _, a in word], dim=2),
        "ltr_dist": ltr_dist,
        "ltr_angle": ltr_angle,
    }
