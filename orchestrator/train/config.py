"""Training settings as a plain dataclass, importable without torch (command-line parsers and ``--plan`` build it
before anything heavy is loaded). ``trainer.py`` re-exports it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = "auto: bf16 on a GPU that supports it, else fp32"


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults are the paper's student recipe (docs/STUDY.md); teachers use lr 2e-5."""

    epochs: int = 5
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda when present
    max_steps: int | None = None  # stop early after this many optimiser steps (benchmarks, smoke runs)
    # Exactly this many optimiser steps, however large the training split: epochs then follow from it (the last one
    # partial). Methods reading different inputs (FT the labelled part, KD every input) get the same budget.
    steps: int | None = None
    # Forward passes under torch.autocast in bf16, or plain fp32. "auto": bf16 on a CUDA device that supports it,
    # fp32 elsewhere (a CPU's bf16 autocast is slower than fp32 on most CPUs). Losses stay float32 either way.
    precision: str = "auto"

    def __post_init__(self) -> None:
        # 0 epochs would report an untrained model as a result; batch size 0 divides by zero mid-run.
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"TrainConfig.steps must be >= 1, got {self.steps}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got '{self.precision}'")

    def for_split(self, train_samples: int) -> TrainConfig:
        """These settings for a training split of ``train_samples``: with ``steps``, the epochs that take and a stop
        at ``steps``; without, unchanged."""
        if self.steps is None:
            return self
        epochs = epochs_for_steps(self.steps, train_samples, self.batch_size)
        stop = self.steps if self.max_steps is None else min(self.steps, self.max_steps)
        return dataclasses.replace(self, epochs=epochs, max_steps=stop)


def epochs_for_steps(steps: int, train_samples: int, batch_size: int) -> int:
    """The epochs ``steps`` optimiser steps take over ``train_samples`` at ``batch_size`` (the last one partial)."""
    return math.ceil(steps / max(math.ceil(train_samples / batch_size), 1))
