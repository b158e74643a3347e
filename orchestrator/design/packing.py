"""Several trials per GPU: Tune's fractional GPU resources, after a memory check.

``trials_per_gpu: k`` in the study YAML gives each trial ``trial_resources.gpu / k`` of a GPU, so Tune places up to
k small students on one device at once (a 7M student at batch 32 x 512 uses a few per cent of an H200). Before
packing, ``check_packing`` estimates each trial's peak GPU memory and refuses a study where k of its largest trials
would not fit the device with a safety margin, naming the student, the estimate and the device memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

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


def device_memory() -> float | None:
    """Total memory of this machine's first GPU, or None without one (the check is then left to the workers).
    Read by nvidia-smi where it is installed: torch would create a CUDA context in the driver that holds GPU memory
    for the whole study, unseen by Ray's accounting."""
    import shutil
    import subprocess

    # torch's device 0 is the first of CUDA_VISIBLE_DEVICES (an index or a UUID, both of which --id takes)
    first = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip() or "0"
    if smi := shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits", f"--id={first}"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                return float(out.stdout.split()[0]) * 1024**2  # MiB
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.get_device_properties(0).total_memory)


def check_packing(k: int, estimates: list[TrialMemory], total: float | None) -> str:
    """Raise PackingError when ``k`` of the largest trials exceed ``total`` bytes; else a line for the log."""
    if k == 1 or not estimates:
        return f"trials per GPU: {k}"
    worst = max(estimates, key=lambda e: e.bytes)
    need = k * worst.bytes * SAFETY
    if total is None:
        return (
            f"trials per GPU: {k} (no GPU on this machine to check; {worst.student} needs about "
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


def estimate_trials(spec: Any, plan: Any) -> list[TrialMemory]:
    """One estimate per student of the plan, at the study's student batch size, length and precision."""
    from models import get_student_spec
    from orchestrator.train.trial import student_shape

    train, precision = spec.student_train, getattr(spec, "precision", "auto")
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
