"""FT: plain fine-tuning with the labels, the baseline every KD method is compared against."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from kd_methods.base import KDMethod, SignalSpec, StudentOutput, TeacherSignals, register
from kd_methods.kd import label_cross_entropy


@register
class FT(KDMethod):
    """Cross-entropy with the labels (over the labelled samples: ``label_cross_entropy``); reads no teacher signal, so
    ``teacher`` may be None."""

    name: ClassVar[str] = "ft"
    family: ClassVar[str] = "none"
    defaults: ClassVar[dict[str, Any]] = {}

    def signals(self) -> SignalSpec:
        return SignalSpec()

    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        return {"hard": label_cross_entropy(student.logits, labels)}
