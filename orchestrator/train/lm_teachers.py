"""Live LM teacher sources: ``online`` (frozen, one forward per batch) and ``in_training`` (the teacher keeps
learning its LM loss while the student distils). The third source, ``cached``, reads the exact LM cache
(``orchestrator/cache/lm_serve.py``). All three are ``TeacherSource``s: ``signals(split, indices, spec)`` returns
the signals of exactly the blocks at ``indices``, plus the output head in ``extras``.

In-training (docs/COMPLETION_STUDY.md): per trial, never shared, never cached (the teacher's weights change at every
step, so there is nothing stable to store). Per batch it runs the teacher forward *with* grad in train mode,
hands the student the detached signals of that same forward (so the student sees the pre-update teacher, and
dropout is on: one forward saved; a recorded choice, the poster does not say), then takes the teacher's own
optimiser step on its shifted LM loss. Own AdamW, linear warm-up/decay; defaults are CodeXGLUE's fine-tuning
recipe (lr 8e-5, weight decay 0.01).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import get_linear_schedule_with_warmup

from kd_methods import SignalSpec, TeacherSignals
from models.lm_teacher import LMTeacher
from orchestrator.train.lm_data import IGNORE_INDEX, LMBlocks

# cached-topk: the compact, approximate cache (orchestrator/cache/lm_topk.py); alpha_cos must then be 0.
TEACHER_MODES = ("cached", "cached-topk", "online", "in_training")


def lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Shifted next-token cross-entropy, padding (-100) ignored; the mean over predicted tokens."""
    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


ONLINE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class OnlineLMTeacher:
    """A frozen teacher run on the batch's blocks (eval mode, no grad). ``with_logits`` hands over the logits it
    computed anyway, so the method need not rebuild them from the head. ``dtype`` runs the teacher in half
    precision (bf16 on a GPU: docs/COMPLETION_STUDY.md, "Cost of the teacher modes"); the method computes its losses in float32."""

    def __init__(
        self,
        teacher: LMTeacher,
        blocks: dict[str, LMBlocks],
        device: torch.device | str = "cpu",
        with_logits: bool = True,
        dtype: str = "float32",
    ) -> None:
        if dtype not in ONLINE_DTYPES:
            raise ValueError(f"unknown online teacher dtype '{dtype}'; valid: {list(ONLINE_DTYPES)}")
        self.device = torch.device(device)
        self.teacher = teacher.to(self.device, ONLINE_DTYPES[dtype]).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.blocks = blocks
        self.with_logits = with_logits

    @torch.no_grad()
    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        self.teacher.eval()
        ids, mask, _ = self.blocks[split].batch(indices, self.device)
        run = SignalSpec(logits=spec.logits or self.with_logits, token_layers=spec.token_layers)
        return self.teacher.signals(ids, mask, run)


@dataclass
class TeacherTrainConfig:
    """The in-training teacher's own optimiser (CodeXGLUE's LM fine-tuning recipe by default)."""

    lr: float = 8e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0


class InTrainingLMTeacher:
    """A teacher that trains on its LM loss during distillation; per trial, owns its optimiser and schedule."""

    def __init__(
        self,
        teacher: LMTeacher,
        blocks: dict[str, LMBlocks],
        total_steps: int,
        device: torch.device | str = "cpu",
        cfg: TeacherTrainConfig | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.teacher = teacher.to(self.device)
        self.blocks = blocks
        self.cfg = cfg or TeacherTrainConfig()
        params = [p for p in self.teacher.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(self.cfg.warmup_ratio * total_steps), max(total_steps, 1)
        )
        self.losses: list[float] = []  # the teacher's own LM loss per step (recorded in the trial's history)

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        if split != "train":
            raise ValueError(f"an in-training teacher serves the train split only, not '{split}'")
        self.teacher.train()
        ids, mask, labels = self.blocks[split].batch(indices, self.device)
        out = self.teacher(ids, mask)
        # Signals from this same forward, detached before the teacher's update.
        run = SignalSpec(logits=True, token_layers=spec.token_layers)
        signals = self.teacher.signals(ids, mask, run, output=out)
        # The head is the live parameter, which the step below changes in place: the logits (from the pre-update
        # forward) are what the student reads, so do not hand over a head that no longer matches them.
        signals.extras = {}
        loss = lm_loss(out.logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.teacher.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.losses.append(float(loss.detach()))
        return signals
