"""Training settings as a plain dataclass, importable without torch (command-line parsers and ``--plan`` build it
before anything heavy is loaded). ``trainer.py`` re-exports it."""

from __future__ import annotations

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
    # Forward passes under torch.autocast in bf16, or plain fp32. "auto": bf16 on a CUDA device that supports it,
    # fp32 elsewhere (a CPU's bf16 autocast is slower than fp32 on most CPUs). Losses stay float32 either way.
    precision: str = "auto"

    def __post_init__(self) -> None:
        # 0 epochs would report an untrained model as a result; batch size 0 divides by zero mid-run.
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got '{self.precision}'")
