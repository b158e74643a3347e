"""PKD (Sun et al. 2019): patient KD, matching normalised [CLS] states of intermediate layers."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from kd_methods.base import (
    KDMethod,
    ModelShape,
    SignalSpec,
    StudentOutput,
    TeacherSignals,
    layer_map,
    register,
)
from kd_methods.kd import at_least_float32, patient_logit_terms, require_teacher


@register
class PKD(KDMethod):
    """alpha*T^2*CE(z_s/T, p_t) + (1-alpha)*CE(z_s, y) + beta * mean_i MSE(n(s_cls_i), n(proj_i(t_cls_m(i)))).

    The feature term is the mean over the matched layers (and, inside MSE, over the batch and the student width),
    as in the study authors' code (one ``MSELoss`` over the stacked ``[B, layers, H]`` states) and PKD's official
    code; it used to be the sum, i.e. (number of matched layers) x the authors' weight.

    ``n`` is L2 normalisation; student layers i are the intermediate ones 1..S-1 (layer 1 when S = 1, so a
    one-layer student still gets a feature signal), m = ``layer_map(S, T)``. Each ``proj_i`` is a trainable
    ``nn.Linear(H_t, H_s)`` owned by this module, so the trainer's optimiser over ``method.parameters()``
    trains it with the student. The projection is on the teacher side, as the study describes; the student's
    layers 1..S all have width ``student.hidden_size`` (also for a BiGRU, whose layer 0 alone differs).
    """

    name: ClassVar[str] = "pkd"
    family: ClassVar[str] = "feature"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 1.0, "beta": 10.0, "temperature": 10.0}

    def __init__(self, student: ModelShape, teacher: ModelShape | None = None, **params: Any) -> None:
        super().__init__(student, teacher, **params)
        if teacher is None:  # the base class already raises; narrows the type
            raise ValueError("PKD needs a teacher shape")
        s_layers = student.num_layers
        mapping = layer_map(s_layers, teacher.num_layers)
        self.student_layers: tuple[int, ...] = tuple(range(1, s_layers)) if s_layers > 1 else (1,)
        self.teacher_layers: tuple[int, ...] = tuple(mapping[i - 1] for i in self.student_layers)
        self.proj = nn.ModuleList(
            nn.Linear(teacher.hidden_size, student.hidden_size) for _ in self.student_layers
        )

    def signals(self) -> SignalSpec:
        return SignalSpec(logits=True, cls_layers=self.teacher_layers)

    def feature_loss(self, student: StudentOutput, teacher: TeacherSignals) -> Tensor:
        """Mean over matched layers of MSE(normalize(s_cls_i), normalize(proj_i(t_cls_m(i))))."""
        total: Tensor | None = None
        for s_layer, t_layer, proj in zip(self.student_layers, self.teacher_layers, self.proj):
            s_cls = at_least_float32(student.cls_states[s_layer])
            t_cls = teacher.cls[t_layer].detach().to(proj.weight.dtype)
            if s_cls.shape[-1] != proj.out_features or t_cls.shape[-1] != proj.in_features:
                raise ValueError(
                    f"PKD built for student width {proj.out_features} / teacher width {proj.in_features}, got "
                    f"student cls layer {s_layer} of width {s_cls.shape[-1]} and teacher cls layer {t_layer} "
                    f"of width {t_cls.shape[-1]}"
                )
            term = F.mse_loss(F.normalize(s_cls, dim=-1), F.normalize(proj(t_cls).to(s_cls.dtype), dim=-1))
            total = term if total is None else total + term
        if total is None:  # unreachable: student_layers is never empty
            raise RuntimeError("PKD has no matched layers")
        return total / len(self.student_layers)

    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        signals = require_teacher(self, teacher, self.signals())
        if signals.logits is None:  # restrict() already raises; narrows the type
            raise KeyError("PKD: teacher signals lack logits")
        alpha = float(self.params["alpha"])
        temperature = float(self.params["temperature"])
        beta = float(self.params["beta"])
        terms = patient_logit_terms(student.logits, signals.logits, labels, alpha, temperature)
        if beta != 0.0:
            terms["feature"] = beta * self.feature_loss(student, signals)
        return terms
