"""KD (Hinton et al. 2015) as the study's authors ran it, plus the logit helpers PKD and CKD share."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods.base import KDMethod, SignalSpec, StudentOutput, TeacherSignals, register

IGNORE_INDEX = -100  # an unlabelled sample's label (tasks/labels.py: UNLABELLED)


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 if it already is: losses are computed in full precision under autocast."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """CE(z_s/T, p_t): mean over the batch of -sum_c p_t,c log softmax(z_s/T)_c, with p_t = softmax(z_t/T).

    The teacher side is detached: only the student learns from this loss. Unlike KL it keeps the teacher's
    entropy, so it is not 0 when the logits agree (the authors' form; the gradient is the same as KL's).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ"
        )
    p_t = F.softmax(at_least_float32(teacher_logits.detach()) / temperature, dim=-1)
    log_p_s = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    return -(p_t * log_p_s).sum(dim=-1).mean()


def label_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """CE(z, y) averaged over the batch's labelled samples; samples labelled -100 (``tasks.labels.UNLABELLED``,
    PyTorch's ``ignore_index``) are left out. With every sample labelled this is exactly ``F.cross_entropy(z, y)``
    (the published label term); with none it is a zero that keeps the graph (its gradient is zero), not NaN.

    Computed in float32 (``at_least_float32``). Branch-free, so no host-device synchronisation per step."""
    z = at_least_float32(logits)
    ce = F.cross_entropy(z, labels, ignore_index=IGNORE_INDEX)  # NaN (0/0) when no sample is labelled
    return torch.where((labels != IGNORE_INDEX).any(), ce, torch.zeros((), dtype=z.dtype, device=z.device))


def patient_logit_terms(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float, temperature: float
) -> dict[str, Tensor]:
    """PKD's and CKD's logit part: ``soft`` = alpha * T^2 * CE(z_s/T, p_t) over every sample and ``hard`` =
    (1 - alpha) * CE(z_s, y) over the labelled ones; a term whose weight is 0 is left out."""
    terms: dict[str, Tensor] = {}
    if alpha != 0.0:
        terms["soft"] = (
            alpha * temperature**2 * soft_cross_entropy(student_logits, teacher_logits, temperature)
        )
    if alpha != 1.0:
        terms["hard"] = (1.0 - alpha) * label_cross_entropy(student_logits, labels)  # labelled only
    return terms


def require_teacher(method: KDMethod, teacher: TeacherSignals | None, spec: SignalSpec) -> TeacherSignals:
    """The teacher signals ``spec`` names, or a clear error: ValueError without a teacher, KeyError naming gaps."""
    if teacher is None:
        raise ValueError(f"method '{method.name}' needs teacher signals {spec.key()}, got None")
    try:
        return teacher.restrict(spec)
    except KeyError as err:
        raise KeyError(f"method '{method.name}': {err.args[0]}") from None


def teacher_logits(method: KDMethod, teacher: TeacherSignals | None) -> Tensor:
    """The teacher's logits, or the error ``require_teacher`` gives."""
    logits = require_teacher(method, teacher, SignalSpec(logits=True)).logits
    if logits is None:  # restrict() already raises; this narrows the type for the checker
        raise KeyError(f"method '{method.name}': teacher signals lack logits")
    return logits


@register
class KD(KDMethod):
    """(1 - w) * CE(z_s/T, p_t) + w * CE(z_s, y), w = ``label_weight`` (0: the authors' pure soft loss).

    The soft term averages over every sample of the batch, the label term over its labelled samples only
    (``label_cross_entropy``), so KD distils on unlabelled inputs too.

    ``t_squared`` multiplies the soft term by T^2 (Hinton's gradient-scale fix); the authors ran without it.
    """

    name: ClassVar[str] = "kd"
    family: ClassVar[str] = "logit"
    defaults: ClassVar[dict[str, Any]] = {"temperature": 10.0, "label_weight": 0.0, "t_squared": False}

    def signals(self) -> SignalSpec:
        return SignalSpec(logits=True)

    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        temperature = float(self.params["temperature"])
        weight = float(self.params["label_weight"])
        soft = soft_cross_entropy(student.logits, teacher_logits(self, teacher), temperature)
        if self.params["t_squared"]:
            soft = soft * temperature**2
        if weight == 0.0:
            return {"soft": soft}
        return {
            "soft": (1.0 - weight) * soft,
            "hard": weight * label_cross_entropy(student.logits, labels),
        }
