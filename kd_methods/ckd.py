"""CKD (Park et al. 2021): distil the teacher's *contextual* knowledge as relations between representations.

Word relation (WR), within each layer, for a token i and tokens j, k of its window |i-j|, |i-k| <= w:
  distance d(i,j) = 1 - cos(h_i, h_j);  angle a(i,j,k) = cos of the angle between h_i - h_j and h_i - h_k.
Layer-transforming relation (LTR), for each token across the used layers l, m, n: the same distance and angle
  relations of h^l, h^m, h^n.
Both are matched student vs teacher by MSE, normalised as the study's authors normalise (their ``loss.py``: one
``F.mse_loss`` over the full relation tensors), with padding left out of numerator and denominator:
  WR distance: per layer, a mean over every window slot of every real token: sum_b n_b * S_b entries, where n_b is
    sample b's number of real tokens and S_b = 2w+1, or n_b when n_b <= w (a sample shorter than the window is
    compared over all its n_b x n_b pairs, as their code does when the window covers the sequence);
  WR angle: per layer, a mean over the full S_b x S_b angle matrix of every real token: sum_b n_b * S_b^2 entries;
  WR is the mean over the layers of (distance MSE + angle MSE);
  LTR distance / angle: a mean over the full layer tensors of every real token, n_tok * L * S_L and
    n_tok * L * S_L^2 entries with S_L = L, or 2w+1 when L > w (then the layers are windowed like the tokens:
    only layer pairs with |l - m| <= w count, as in their code).
The entries not computed below (j = i, j = k, out-of-range or padding slots) are zero by construction for both
models (the distance of a token to itself is 0, an angle with a zero difference vector is 0 in their code, the
angle of j = k is 1, an out-of-range slot is a zero vector), so they only add to the denominators.

Everything is computed from Gram matrices, never from difference vectors per pair or triple:
  |a - b|^2 = |a|^2 + |b|^2 - 2 a.b  and  (h_i - h_j).(h_i - h_k) = G_ii - G_ij - G_ik + G_jk,
so a layer costs one banded Gram (the 4w+1 diagonals around the main one) plus O(N w^2) scalar work.

Entries where a relation is undefined or constant are never computed: a distance to the token itself (j = i) is
masked, and the angle is kept only for window slots j < k, both != i (it is symmetric in j, k, undefined for
j = i or k = i and always 1 for j = k), and for LTR only layer pairs l < m and triples with m < n, both != l.
Entries touching padding or positions outside the common prefix of the student's and teacher's sequences are
masked.

Tensors ``ckd_relations`` returns all have batch first and token second (``[B, N, ...]``), like
``TeacherSignals.tokens``, so a teacher cache can store, pad and slice them per sample the same way.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_methods.base import (
    DerivedRequest,
    KDMethod,
    ModelShape,
    SignalSpec,
    StudentOutput,
    TeacherSignals,
    layer_map,
    register,
)
from kd_methods.ckd_relations import (  # noqa: F401 - re-exported: the cache and tests import them from here
    _EPS,
    band_gram,
    layer_gram,
    layer_pairs,
    layer_relations,
    layer_relations_from_gram,
    layer_triples,
    relations_from_grams,
    teacher_grams,
    window_pairs,
    word_relations,
    word_relations_from_band,
)
from kd_methods.kd import patient_logit_terms, require_teacher

EXTRA_KEYS = ("ckd.wr_dist", "ckd.wr_angle", "ckd.ltr_dist", "ckd.ltr_angle")


def window_masks(valid: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Valid WR entries for token mask ``valid [B, N]``: distance ``[B, N, 2w+1]``, angle ``[B, N, P]``.

    An entry is valid when i, j (and k) are real tokens inside the sequence and j != i (the angle's slots exclude
    k = i and j = k already).
    """
    valid = valid.bool()
    w = window
    valid_j = F.pad(valid, (w, w), value=False).unfold(1, 2 * w + 1, 1)  # [B, N, 2w+1]
    not_self = torch.arange(2 * w + 1, device=valid.device) != w
    dist_mask = valid.unsqueeze(-1) & valid_j & not_self
    slot_a, slot_c = window_pairs(w, valid.device)
    angle_mask = valid.unsqueeze(-1) & valid_j.index_select(2, slot_a) & valid_j.index_select(2, slot_c)
    return dist_mask, angle_mask


def layer_masks(valid: Tensor) -> Tensor:
    """Valid LTR entries: the token's own validity ``[B, N, 1]``, broadcast over every layer pair and triple."""
    return valid.bool().unsqueeze(-1)


def window_slots(valid: Tensor, window: int) -> Tensor:
    """S_b per sample ``[B]``: the window slots each real token has, 2w+1, or n_b when the sample's n_b real tokens
    fit in the window (n_b <= w), where the authors' ``windowed`` compares every pair of the sequence."""
    count = valid.bool().sum(dim=1)
    return torch.where(count <= window, count, torch.full_like(count, 2 * window + 1))


def wr_denominators(valid: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Entries per layer of the authors' full WR tensors over the real tokens: distance sum_b n_b S_b, angle
    sum_b n_b S_b^2 (float64 scalars)."""
    count = valid.bool().sum(dim=1).to(torch.float64)
    slots = window_slots(valid, window).to(torch.float64)
    return (count * slots).sum(), (count * slots * slots).sum()


def layer_window_slots(num_layers: int, window: int) -> int:
    """S_L: the layer slots each layer has in LTR, L, or 2w+1 when there are more layers than the window."""
    return num_layers if num_layers <= window else 2 * window + 1


def layer_window_keep(
    num_layers: int, window: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Which ``layer_pairs`` / ``layer_triples`` entries lie in the layer window (all of them when L <= w):
    pairs with |l - m| <= w, triples with |l - m| <= w and |l - n| <= w."""
    pair_l, pair_m = layer_pairs(num_layers, device)
    tri_l, tri_m, tri_n = layer_triples(num_layers, device)
    if num_layers <= window:
        return (
            torch.ones_like(pair_l, dtype=torch.bool),
            torch.ones_like(tri_l, dtype=torch.bool),
        )
    return (pair_l - pair_m).abs() <= window, ((tri_l - tri_m).abs() <= window) & (
        (tri_l - tri_n).abs() <= window
    )


def ltr_denominators(valid: Tensor, num_layers: int, window: int) -> tuple[Tensor, Tensor]:
    """Entries of the authors' full LTR tensors over the real tokens: distance n_tok L S_L, angle n_tok L S_L^2."""
    tokens = valid.bool().sum().to(torch.float64)
    slots = layer_window_slots(num_layers, window)
    return tokens * num_layers * slots, tokens * num_layers * slots * slots


def masked_sum_sq(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Sum of (student - teacher)^2 over ``mask`` (``where``, so a non-finite masked-out entry cannot leak in)."""
    mask = mask.expand_as(student)
    return torch.where(mask, (student - teacher.to(student.dtype)) ** 2, student.new_zeros(())).sum()


def _relations(
    hidden: list[Tensor], window: int, ltr_hidden: list[Tensor] | None = None
) -> dict[str, Tensor]:
    with torch.autocast(device_type=hidden[0].device.type, enabled=False):
        word = [word_relations(h, window) for h in hidden]
        ltr_dist, ltr_angle = layer_relations(ltr_hidden if ltr_hidden is not None else hidden)
    return {
        "wr_dist": torch.stack([d for d, _ in word], dim=2),
        "wr_angle": torch.stack([a for _, a in word], dim=2),
        "ltr_dist": ltr_dist,
        "ltr_angle": ltr_angle,
    }


def ckd_relations(
    hidden: list[Tensor], mask: Tensor, window: int, ltr_hidden: list[Tensor] | None = None
) -> dict[str, Tensor]:
    """All CKD relations of one model's layers ``hidden`` (L tensors ``[B, N, H_l]``) and token mask ``[B, N]``.

    Returns ``wr_dist [B, N, L, 2w+1]``, ``wr_angle [B, N, L, P_w]`` (P_w = ``len(window_pairs(w)[0])``),
    ``ltr_dist [B, N, P_d]``, ``ltr_angle [B, N, P_a]`` (``layer_pairs(L)``, ``layer_triples(L)``) and the boolean
    mask of each, broadcastable to it after a layer axis is added to the WR ones (``wr_dist_mask [B, N, 2w+1]``,
    ``wr_angle_mask [B, N, P_w]``, ``ltr_dist_mask`` = ``ltr_angle_mask`` ``[B, N, 1]``). ``ltr_hidden`` replaces
    ``hidden`` for LTR when the layers' widths differ (e.g. a BiGRU's projected embedding output). Computed in
    float32 with autocast off: the Gram formulas cancel catastrophically in half precision.
    """
    wr_dist_mask, wr_angle_mask = window_masks(mask, window)
    ltr_mask = layer_masks(mask)
    return {
        **_relations(hidden, window, ltr_hidden),
        "wr_dist_mask": wr_dist_mask,
        "wr_angle_mask": wr_angle_mask,
        "ltr_dist_mask": ltr_mask,
        "ltr_angle_mask": ltr_mask,
    }


def masked_mse(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean of (student - teacher)^2 over ``mask`` (0 when no entry is valid). ``where``, not a product, so a
    non-finite value in a masked-out teacher entry cannot leak in."""
    return masked_sum_sq(student, teacher, mask) / mask.expand_as(student).sum().clamp_min(1)


@register
class CKD(KDMethod):
    """alpha*T^2*CE(z_s/T, p_t) + (1-alpha)*CE(z_s, y) + beta*(WR + gamma*LTR).

    Layers: the embedding output (student 0 <-> teacher 0) and student layer i = 1..S <-> teacher layer
    ``layer_map(S, T)[i-1]``. WR is the mean over these layers of (distance MSE + angle MSE); LTR is distance MSE +
    angle MSE across them, each MSE normalised as the study's authors normalise (see the module docstring; the
    four weighted parts are ``loss_terms``' ``wr_dist``, ``wr_angle``, ``ltr_dist``, ``ltr_angle``). Token
    positions are compared over the common prefix min(N_s, N_t), as the authors do (the tokenizers differ).

    When the student's embedding width differs from its layer width (BiGRU: E != 2H) the module owns a trainable
    ``embed_proj = nn.Linear(E, H_s)`` that maps the embedding output to the layer width, used for LTR only
    (which needs one width across layers; WR compares within a layer, so it uses the raw embedding output).
    RoBERTa students and the teachers have one width and get no projection.

    If ``teacher.extras`` holds the four ``EXTRA_KEYS`` (``teacher_extras`` makes them, e.g. at cache-build time),
    the teacher's relations are read from them instead of being recomputed from its token states.
    """

    name: ClassVar[str] = "ckd"
    family: ClassVar[str] = "feature"
    defaults: ClassVar[dict[str, Any]] = {
        "alpha": 1.0,
        "beta": 10.0,
        "gamma": 10.0,
        "temperature": 3.0,
        "window": 10,
    }
    batch_size_cap: ClassVar[int | None] = (
        16  # the relations are memory-hungry: the paper trains CKD at batch 16
    )

    def __init__(self, student: ModelShape, teacher: ModelShape | None = None, **params: Any) -> None:
        super().__init__(student, teacher, **params)
        if teacher is None:  # the base class already raises; narrows the type
            raise ValueError("CKD needs a teacher shape")
        window = self.params["window"]
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"CKD window must be a positive int, got {window!r}")
        self.window: int = window
        self.student_layers: tuple[int, ...] = tuple(range(student.num_layers + 1))
        self.teacher_layers: tuple[int, ...] = (0, *layer_map(student.num_layers, teacher.num_layers))
        self.embed_proj: nn.Linear | None = (
            nn.Linear(student.embedding_width, student.hidden_size)
            if student.embedding_width != student.hidden_size
            else None
        )

    def signals(self) -> SignalSpec:
        return SignalSpec(logits=True, token_layers=self.teacher_layers)

    def cache_needs(self) -> tuple[SignalSpec, DerivedRequest | None]:
        """From a cache, CKD reads logits and Gram numbers over its teacher layers (``ckd_cache.py``), from which
        its teacher relations follow on the device, instead of the token states."""
        return SignalSpec(logits=True), DerivedRequest(
            "ckd", (self.teacher_layers,), (("window", self.window),)
        )

    def teacher_extras(self, signals: TeacherSignals) -> dict[str, Tensor]:
        """The teacher's relations over its own length N_t, under ``EXTRA_KEYS``, for a cache to store.

        Needs ``signals.tokens`` for ``signals().token_layers`` and ``signals.token_mask``.
        """
        if signals.token_mask is None:
            raise KeyError("CKD.teacher_extras: teacher signals lack token_mask")
        missing = [layer for layer in self.teacher_layers if layer not in signals.tokens]
        if missing:
            raise KeyError(f"CKD.teacher_extras: teacher signals lack token layers {missing}")
        with torch.no_grad():
            hidden = [signals.tokens[layer] for layer in self.teacher_layers]
            rel = ckd_relations(hidden, signals.token_mask, self.window)
        return {f"ckd.{k}": rel[k] for k in ("wr_dist", "wr_angle", "ltr_dist", "ltr_angle")}

    def _teacher_relations(self, teacher: TeacherSignals, length: int) -> dict[str, Tensor]:
        """Teacher relations over the first ``length`` positions: from extras if all are there, else from tokens."""
        present = [k for k in EXTRA_KEYS if k in teacher.extras]
        if present and len(present) != len(EXTRA_KEYS):
            raise KeyError(f"CKD: teacher extras hold {present} but not all of {list(EXTRA_KEYS)}")
        if present:
            num_layers = len(self.teacher_layers)
            expected = {
                "ckd.wr_dist": (num_layers, 2 * self.window + 1),
                "ckd.wr_angle": (num_layers, len(window_pairs(self.window)[0])),
                "ckd.ltr_dist": (len(layer_pairs(num_layers)[0]),),
                "ckd.ltr_angle": (len(layer_triples(num_layers)[0]),),
            }
            out = {}
            for key, tail in expected.items():
                value = teacher.extras[key]
                if tuple(value.shape[2:]) != tail or value.shape[1] < length:
                    raise ValueError(
                        f"CKD: teacher extra '{key}' has shape {tuple(value.shape)}, expected [B, >={length}, "
                        f"{', '.join(map(str, tail))}] for window {self.window} and {num_layers} layers"
                    )
                out[key.removeprefix("ckd.")] = value[:, :length].detach()
            return out
        missing = [layer for layer in self.teacher_layers if layer not in teacher.tokens]
        if missing:
            raise KeyError(f"CKD: teacher signals lack token layers {missing} (and no precomputed relations)")
        hidden = [teacher.tokens[layer][:, :length].detach() for layer in self.teacher_layers]
        with torch.no_grad():
            return _relations(hidden, self.window)

    def feature_terms(self, student: StudentOutput, teacher: TeacherSignals) -> dict[str, Tensor]:
        """Unweighted WR distance, WR angle (each averaged over the layers), LTR distance and LTR angle MSEs
        between the student's and the teacher's relations over their common prefix."""
        if teacher.token_mask is None:
            raise KeyError("CKD: teacher signals lack token_mask")
        if len(student.hidden_states) != len(self.student_layers):
            raise ValueError(
                f"CKD built for a {len(self.student_layers) - 1}-layer student, got "
                f"{len(student.hidden_states)} hidden states"
            )
        length = min(student.hidden_states[0].shape[1], teacher.token_mask.shape[1])
        valid = student.attention_mask[:, :length].bool() & teacher.token_mask[:, :length].bool()
        t_rel = self._teacher_relations(teacher, length)
        s_hidden = [h[:, :length] for h in student.hidden_states]
        ltr_hidden = list(s_hidden)
        if self.embed_proj is not None:
            ltr_hidden[0] = self.embed_proj(s_hidden[0])
        elif s_hidden[0].shape[-1] != s_hidden[-1].shape[-1]:
            raise ValueError(
                f"student embedding width {s_hidden[0].shape[-1]} != layer width {s_hidden[-1].shape[-1]}, but CKD "
                "was built without an embedding projection: set ModelShape.embedding_size"
            )
        num_layers = len(s_hidden)
        wr_dist_mask, wr_angle_mask = window_masks(valid, self.window)
        wr_dist_den, wr_angle_den = wr_denominators(valid, self.window)
        pair_keep, triple_keep = layer_window_keep(num_layers, self.window, valid.device)
        ltr_mask = layer_masks(valid)
        ltr_dist_den, ltr_angle_den = ltr_denominators(valid, num_layers, self.window)
        with torch.autocast(device_type=valid.device.type, enabled=False):
            wr_dist = s_hidden[0].new_zeros((), dtype=torch.float32)
            wr_angle = s_hidden[0].new_zeros((), dtype=torch.float32)
            for layer, h in enumerate(s_hidden):
                s_dist, s_angle = word_relations(h, self.window)
                wr_dist = wr_dist + masked_sum_sq(s_dist, t_rel["wr_dist"][:, :, layer], wr_dist_mask)
                # The angle matrix is symmetric in (j, k) and only j < k is stored: each entry counts twice.
                wr_angle = wr_angle + 2.0 * masked_sum_sq(
                    s_angle, t_rel["wr_angle"][:, :, layer], wr_angle_mask
                )
            s_ltr_dist, s_ltr_angle = layer_relations(ltr_hidden)
            # Likewise only l < m (distance) and m < n (angle) are stored.
            ltr_dist = 2.0 * masked_sum_sq(s_ltr_dist, t_rel["ltr_dist"], ltr_mask & pair_keep)
            ltr_angle = 2.0 * masked_sum_sq(s_ltr_angle, t_rel["ltr_angle"], ltr_mask & triple_keep)

        def mean(total: Tensor, entries: Tensor) -> Tensor:
            return total / entries.clamp_min(1).to(total.dtype)

        return {
            "wr_dist": mean(wr_dist, wr_dist_den * num_layers),
            "wr_angle": mean(wr_angle, wr_angle_den * num_layers),
            "ltr_dist": mean(ltr_dist, ltr_dist_den),
            "ltr_angle": mean(ltr_angle, ltr_angle_den),
        }

    def feature_loss(self, student: StudentOutput, teacher: TeacherSignals) -> tuple[Tensor, Tensor]:
        """(WR, LTR) between the student's and the teacher's relations over their common prefix."""
        parts = self.feature_terms(student, teacher)
        return parts["wr_dist"] + parts["wr_angle"], parts["ltr_dist"] + parts["ltr_angle"]

    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        signals = require_teacher(self, teacher, SignalSpec(logits=True))
        if teacher is None or signals.logits is None:  # require_teacher already raises; narrows the types
            raise KeyError("CKD: teacher signals lack logits")
        alpha = float(self.params["alpha"])
        temperature = float(self.params["temperature"])
        beta, gamma = float(self.params["beta"]), float(self.params["gamma"])
        terms = patient_logit_terms(student.logits, signals.logits, labels, alpha, temperature)
        if beta != 0.0:
            parts = self.feature_terms(student, teacher)
            terms["wr_dist"] = beta * parts["wr_dist"]
            terms["wr_angle"] = beta * parts["wr_angle"]
            if gamma != 0.0:
                terms["ltr_dist"] = beta * gamma * parts["ltr_dist"]
                terms["ltr_angle"] = beta * gamma * parts["ltr_angle"]
        return terms
