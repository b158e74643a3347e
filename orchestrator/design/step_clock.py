"""How ``--calibrate`` times a training step without touching the loop: forward hooks on the model mark when each
training forward pass starts (a step is the time between the starts of consecutive ones) and how long each
evaluation pass takes."""

from __future__ import annotations

import time
from typing import Any


class StepClock:
    """Forward-pass start times of a model (training and evaluation), and each evaluation pass's duration."""

    def __init__(self, model: Any, cuda: bool) -> None:
        self.starts: list[tuple[bool, float]] = []
        self.evals: list[float] = []
        self.cuda = cuda
        self.handles = [model.register_forward_pre_hook(self._pre), model.register_forward_hook(self._post)]

    def _pre(self, module: Any, args: Any) -> None:
        self.starts.append((module.training, time.perf_counter()))

    def _post(self, module: Any, args: Any, out: Any) -> None:
        if not module.training:
            if self.cuda:
                import torch

                # the device the model is on (not the current one, cuda:0, when the run uses cuda:N)
                param = next(module.parameters(), None)
                torch.cuda.synchronize(param.device if param is not None else None)
            self.evals.append(time.perf_counter() - self.starts[-1][1])

    def step_seconds(self, warmup: int) -> tuple[float, int]:
        """The median seconds of a training step after ``warmup`` steps (the last ends where evaluation starts):
        a median, so that a moment of other load on a shared machine does not land in the estimate."""
        import statistics

        marks = [t for training, t in self.starts if training]
        marks = [*marks, next(t for training, t in self.starts if not training)][warmup:]
        gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        return statistics.median(gaps), len(gaps)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
