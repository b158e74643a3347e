"""DISTIL: the DistilBERT / DistilGPT2 loss for causal LMs (Sanh et al. 2019; HF ``distillation/distiller.py``).

    loss = alpha_ce  * T^2 * mean_{non-pad positions} KL(softmax(z_t / T) || softmax(z_s / T))
         + alpha_clm * CE(z_s[:, :-1], y[:, 1:])                 (shifted LM loss, padding ignored)
         + alpha_cos * mean_{non-pad positions} (1 - cos(h_s, h_t))   (final hidden states, after GPT-2's ln_f)

The KL is unshifted: at every position both models predict the next token, so every non-padding position counts,
the block's last one included (as in ``distiller.py``, whose ``KLDivLoss(batchmean)`` over the selected positions
is this per-position mean). The teacher's logits come either as ``logits`` (an online teacher) or are rebuilt as
``h_t @ W^T (+ b)`` from its final hidden state and its output head, ``extras["lm_head.weight"]`` (the exact LM
cache stores only those: ``orchestrator/cache/lm_cache.py``); the rebuild runs in chunks of ``chunk`` positions so
that a 50k vocabulary never needs the whole ``[B, N, V]`` teacher tensor at once.

Defaults: T = 2 (HF ``train.py``'s default) and alpha_ce = 5, alpha_clm = 2, alpha_cos = 1: DistilBERT's published
weights (alpha_ce 5, alpha_mlm 2, alpha_cos 1: the README's training command, confirmed by Sanh in transformers
#2013), with the causal LM loss in the role of the masked LM loss. DistilGPT2's own weights were never published
(transformers #3206, #12331), and ``train.py``'s defaults (0.5 / 0.5 / 0) are placeholders, not a recipe: the
official README's only training example is DistilBERT's (with ``--alpha_clm 0.0 --mlm``); third-party GPT-2 runs of
those scripts use the 5 / 2 / 1 weights with ``--alpha_clm 2.0``. The soft term dominates by design (the KL is small
per position, and T^2 keeps its gradient scale comparable across temperatures). The weights are factors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods.base import KDMethod, SignalSpec, StudentOutput, TeacherSignals, register
from kd_methods.kd import at_least_float32

HEAD_WEIGHT, HEAD_BIAS = "lm_head.weight", "lm_head.bias"
# The approximate top-k cache's extras (orchestrator/cache/lm_topk.py): [B, N, k] ids and logits, [B, N, |T|] exact
# log-sum-exps at the temperatures listed in TOPK_TEMPERATURES.
TOPK_IDS, TOPK_LOGITS, TOPK_LSE, TOPK_TEMPERATURES = (
    "topk.ids",
    "topk.logits",
    "topk.lse",
    "topk.temperatures",
)
IGNORE_INDEX = -100
REST_EPS = 1e-6  # top-k: a missing teacher mass below this is float32 rounding, counted as 0


def kl_sum(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Sum over positions of KL(softmax(z_t/T) || softmax(z_s/T)); both ``[P, V]``, the teacher detached."""
    log_p_t = F.log_softmax(at_least_float32(teacher_logits.detach()) / temperature, dim=-1)
    log_p_s = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum()


def teacher_logits_rows(teacher: TeacherSignals, layer: int, rows: Tensor) -> Tensor:
    """The teacher's logits at the flattened positions ``rows``: given, or rebuilt from ``h_t`` and the head."""
    if teacher.logits is not None:
        return teacher.logits.reshape(-1, teacher.logits.shape[-1])[rows]
    if HEAD_WEIGHT not in teacher.extras or layer not in teacher.tokens:
        raise KeyError(
            f"method 'distil': teacher signals need logits, or token layer {layer} plus '{HEAD_WEIGHT}' in extras"
        )
    hidden = teacher.tokens[layer]
    weight = teacher.extras[HEAD_WEIGHT]
    h = at_least_float32(hidden.reshape(-1, hidden.shape[-1])[rows])
    # in float32 even inside the trainer's bf16 autocast (a matmul would come out bf16 there): the cached
    # teacher's logits must equal the in-training teacher's, which are computed outside autocast
    with torch.autocast(device_type=h.device.type, enabled=False):
        logits = h @ at_least_float32(weight).T
        bias = teacher.extras.get(HEAD_BIAS)
        return logits + at_least_float32(bias) if bias is not None else logits


def topk_kl_sum(
    student_logits: Tensor, ids: Tensor, t_values: Tensor, t_lse: Tensor, temperature: float
) -> Tensor:
    """APPROXIMATE: the KL over k + 1 outcomes (the teacher's top-k tokens and one bucket for the rest), summed over
    positions. The teacher's kept probabilities are exact (exact LSE), the rest bucket holds the known missing mass;
    this lower-bounds the full KL (a coarse-graining). ``student_logits`` ``[P, V]``, ``ids``/``t_values`` ``[P, k]``,
    ``t_lse`` ``[P]`` (at ``temperature``)."""
    log_q = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    log_q_k = log_q.gather(-1, ids)
    log_p_k = at_least_float32(t_values) / temperature - at_least_float32(t_lse).unsqueeze(-1)
    p_k = log_p_k.exp()
    p_rest = 1.0 - p_k.sum(-1)
    # A rest mass at float32 rounding level (an exhaustive top-k) is no mass: without this, ~1e-7 times
    # log(1e-7 / 1e-30) would add a spurious term.
    p_rest = torch.where(p_rest > REST_EPS, p_rest, torch.zeros_like(p_rest))
    log_q_rest = torch.log((-torch.expm1(torch.logsumexp(log_q_k, dim=-1))).clamp_min(1e-30))
    kept = (p_k * (log_p_k - log_q_k)).sum(-1)
    rest = torch.xlogy(p_rest, p_rest) - p_rest * log_q_rest
    return (kept + rest).sum()


def _topk_rows(teacher: TeacherSignals, rows: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k ids, logits and the LSE at ``temperature`` of the flattened positions ``rows``."""
    temps = teacher.extras[TOPK_TEMPERATURES].tolist()
    match = [i for i, t in enumerate(temps) if abs(t - temperature) < 1e-6]
    if not match:
        raise KeyError(
            f"method 'distil': the top-k cache holds log-sum-exps for T in {temps}, not T = {temperature}"
        )
    ids, values = teacher.extras[TOPK_IDS], teacher.extras[TOPK_LOGITS]
    k = ids.shape[-1]
    lse = teacher.extras[TOPK_LSE][..., match[0]].reshape(-1)[rows]
    return ids.reshape(-1, k)[rows].long(), values.reshape(-1, k)[rows], lse


@register
class Distil(KDMethod):
    """alpha_ce * T^2 * KL + alpha_clm * shifted LM CE + alpha_cos * (1 - cos) on final hidden states.

    ``labels`` are the input ids with ``-100`` at padding (the LM trainer's convention). ``chunk``: positions per
    KL chunk (memory only; the value is the same)."""

    name: ClassVar[str] = "distil"
    family: ClassVar[str] = "logit"
    defaults: ClassVar[dict[str, Any]] = {
        "temperature": 2.0,
        "alpha_ce": 5.0,
        "alpha_clm": 2.0,
        "alpha_cos": 1.0,
        "chunk": 1024,
    }

    def __init__(self, student: Any, teacher: Any = None, **params: Any) -> None:
        super().__init__(student, teacher, **params)
        if float(self.params["temperature"]) <= 0:
            raise ValueError(f"distil: temperature must be positive, got {self.params['temperature']}")
        if float(self.params["alpha_cos"]) > 0 and teacher.hidden_size != student.hidden_size:
            raise ValueError(
                f"distil: alpha_cos > 0 compares final hidden states, but the student is {student.hidden_size} "
                f"wide and the teacher {teacher.hidden_size}; set alpha_cos 0 or match the widths"
            )

    @property
    def teacher_layer(self) -> int:
        """The teacher's final hidden state (after GPT-2's ln_f): ``hidden_states[L_t]``."""
        return self.teacher_shape.num_layers

    def signals(self) -> SignalSpec:
        # Final hidden state (cosine target, and the logits via the head the source serves in extras). With
        # alpha_ce = alpha_cos = 0 this is plain LM fine-tuning (the FT baseline): no teacher signal at all.
        if float(self.params["alpha_ce"]) <= 0 and float(self.params["alpha_cos"]) <= 0:
            return SignalSpec()
        return SignalSpec(token_layers=(self.teacher_layer,))

    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        if teacher is None:
            if not self.signals().empty:
                raise ValueError("method 'distil' needs teacher signals, got None")
            teacher = TeacherSignals()  # LM-only (alpha_ce = alpha_cos = 0): no teacher term reads it
        temperature = float(self.params["temperature"])
        if student.logits.dim() != 3:
            raise ValueError(
                f"method 'distil' is for causal LMs (logits [B, N, V]), got logits {tuple(student.logits.shape)}: "
                "use kd/dist/pkd/ckd for classification tasks"
            )
        b, n, v = student.logits.shape
        rows = student.attention_mask.reshape(-1).bool().nonzero().squeeze(1)
        terms: dict[str, Tensor] = {}
        if float(self.params["alpha_ce"]) > 0:
            s_flat = student.logits.reshape(b * n, v)
            total = student.logits.new_zeros((), dtype=torch.float32)
            approximate = teacher.logits is None and TOPK_IDS in teacher.extras
            for part in rows.split(int(self.params["chunk"])):
                if approximate:  # cached-topk: the KL over the kept tokens and one rest bucket
                    total = total + topk_kl_sum(
                        s_flat[part], *_topk_rows(teacher, part, temperature), temperature
                    )
                    continue
                t_part = teacher_logits_rows(teacher, self.teacher_layer, part)
                if t_part.shape[-1] != v:
                    raise ValueError(
                        f"distil: student vocabulary {v} != teacher vocabulary {t_part.shape[-1]}"
                    )
                total = total + kl_sum(s_flat[part], t_part, temperature)
            kl = total / max(len(rows), 1)
            terms["ce"] = float(self.params["alpha_ce"]) * temperature**2 * kl
        if float(self.params["alpha_clm"]) > 0:
            clm = F.cross_entropy(
                at_least_float32(student.logits[:, :-1].reshape(-1, v)),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
            terms["clm"] = float(self.params["alpha_clm"]) * clm
        if float(self.params["alpha_cos"]) > 0:
            h_t = teacher.tokens.get(self.teacher_layer)
            if h_t is None:
                raise KeyError(
                    f"method 'distil': teacher signals lack token layer {self.teacher_layer} for the cosine term "
                    "(a top-k cache stores no hidden states: set alpha_cos 0 or use the exact cache)"
                )
            h_s = student.hidden_states[-1].reshape(b * n, -1)[rows]
            h_t = h_t.reshape(b * n, -1)[rows].detach()
            cos = F.cosine_similarity(at_least_float32(h_s), at_least_float32(h_t), dim=-1)
            terms["cos"] = float(self.params["alpha_cos"]) * (1.0 - cos).mean()
        return terms
