"""Several trials per GPU: Tune's fractional GPU resources, after a memory check.

``trials_per_gpu: k`` in the study YAML gives each trial ``trial_resources.gpu / k`` of a GPU, so Tune places up to
k small students on one device at once (a 7M student at batch 32 x 512 uses a few per cent of an H200). Before
packing, ``check_packing`` estimates each trial's peak GPU memory and refuses a study where k of its largest trials
would not fit the device with a safety margin, naming the student, the estimate and the device memory. On a cluster
the device is the smallest GPU of the live GPU nodes, read on each (``sweep/cluster_check.cluster_gpu``), and
``precision: auto`` counts as bf16 when every one of them supports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orchestrator.core.device import GpuInfo, trial_precision

GIB = 1024**3
CUDA_CONTEXT_BYTES = 0.6 * GIB  # per process: the CUDA context and cuBLAS/cuDNN workspaces
SAFETY = 1.3  # the estimate is a model, not a measurement: keep 30% headroom


class PackingError(ValueError):
    """k trials of this study would not fit one GPU."""


@dataclass(frozen=True)
class TrialMemory:
    student: str
    bytes: float


def trial_bytes(params: int, hidden: int, layers: int, batch: int, length: int, precision: str) -> float:
    """Peak GPU memory of one training trial: fp32 weights, gradients and AdamW's two moments (16 bytes per
    parameter) plus activations kept for backward, about 34 * batch * length * hidden bytes per layer in 16-bit
    (Korthikanti et al. 2022, without recomputation), doubled in fp32; plus the CUDA context."""
    act = 34 * batch * length * hidden * max(layers, 1) * (1 if precision == "bf16" else 2)
    return 16 * params + act + CUDA_CONTEXT_BYTES


def resources(spec: Any) -> dict[str, float]:
    """Tune's per-trial resources: the configured CPUs and ``gpu / trials_per_gpu`` of a GPU."""
    r = spec.trial_resources
    k = max(1, int(getattr(spec, "trials_per_gpu", 1)))
    return {"cpu": r.cpu, "gpu": r.gpu / k if r.gpu else 0.0}


def per_gpu(spec: Any) -> int:
    """How many trials Tune may place on one GPU: ``floor(1 / fraction)`` of a trial's GPU share, so a study that
    packs by ``trial_resources: {gpu: 0.5}`` alone is memory-checked as well as one with ``trials_per_gpu``."""
    gpu = resources(spec)["gpu"]
    return math.floor(1 / gpu + 1e-9) if 0 < gpu < 1 else 1


def check_packing(k: int, estimates: list[TrialMemory], total: float | None) -> str:
    """Raise PackingError when ``k`` of the largest trials exceed ``total`` bytes; else a line for the log."""
    if k == 1 or not estimates:
        return f"trials per GPU: {k}"
    worst = max(estimates, key=lambda e: e.bytes)
    need = k * worst.bytes * SAFETY
    if total is None:
        return (
            f"trials per GPU: {k} (no GPU up to check; {worst.student} needs about "
            f"{worst.bytes / GIB:.1f} GiB each)"
        )
    if need > total:
        fits = max(1, int(total // (worst.bytes * SAFETY)))
        raise PackingError(
            f"trials_per_gpu: {k} trials of {worst.student} need about {need / GIB:.1f} GiB "
            f"({worst.bytes / GIB:.1f} GiB each, with {int((SAFETY - 1) * 100)}% headroom) but the GPU has "
            f"{total / GIB:.1f} GiB; at most {fits} fit"
        )
    return f"trials per GPU: {k} (largest: {worst.student}, {need / GIB:.1f} of {total / GIB:.1f} GiB)"


def estimate_trials(spec: Any, plan: Any, gpu: GpuInfo | None = None) -> list[TrialMemory]:
    """One estimate per student of the plan, at the study's student batch size, length and precision (on ``gpu``:
    ``auto`` is bf16 where it supports it)."""
    from models import get_student_spec
    from orchestrator.train.trial import student_shape

    train, precision = spec.student_train, trial_precision(getattr(spec, "precision", "auto"), gpu)
    counted = {t.student: t.student_params for t in plan.trials}
    out = []
    for name in sorted(counted):
        shape = student_shape(name)
        params = counted[name] or _params(get_student_spec(name))
        size = trial_bytes(
            params, shape.hidden_size, shape.num_layers, train.batch_size, train.max_length, precision
        )
        out.append(TrialMemory(name, size))
    return out


def _params(s: Any) -> int:
    """A parameter count from the spec's widths (embeddings + layers), for students the plan did not count."""
    h = s.hidden_size
    per_layer = 4 * h * h + 2 * h * max(s.intermediate_size, 4 * h)
    return s.vocab_size * max(h, s.embed_dim) + s.num_layers * per_layer
