"""Teacher signals produced live, at every step: the paper's way, kept for comparison and for methods that cannot
be cached (in-training distillation). The teacher runs in eval mode under no_grad (the authors' PKD/DIST/CKD code
left dropout on; we do not)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd_methods import SignalSpec, TeacherSignals
from orchestrator.train.trainer import EncodedSplit


class OnlineTeacher:
    """A ``TeacherSource`` that runs the teacher on the batch's samples, encoded with the teacher's tokenizer."""

    def __init__(
        self, teacher: nn.Module, encoded: dict[str, EncodedSplit], device: torch.device | str = "cpu"
    ):
        self.teacher = teacher.to(device).eval()
        self.encoded = encoded
        self.device = torch.device(device)

    @torch.no_grad()
    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        self.teacher.eval()
        ids, mask, _ = self.encoded[split].batch(indices, self.device)
        return self.teacher.signals(ids, mask, spec)
