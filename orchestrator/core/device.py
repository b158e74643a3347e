"""Which device and precision a run uses: resolved where it runs (``auto`` means what this machine has), and what
this machine's GPU holds (``device_gpu``, read for the packing check). Torch is
imported inside the functions, so a command's parser and ``--plan`` can import this module for free."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``; ``auto`` is bf16 on a CUDA device with bf16 support, fp32 elsewhere."""
    import torch

    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return name


def cache_precision(precision: str) -> str:
    """A study's teacher-pass precision: ``bf16`` only when asked for explicitly. ``auto`` builds fp32 caches, since
    a cache key must not depend on which machine builds it (a CPU head plans, a GPU worker builds)."""
    return "bf16" if precision == "bf16" else "fp32"


@dataclass(frozen=True)
class GpuInfo:
    """A GPU the trials would run on: its total memory and whether ``precision: auto`` trains in bf16 there."""

    memory: float  # bytes
    bf16: bool  # compute capability 8.0 or newer (core/device.resolve_precision: bf16 where supported)


def device_gpu() -> GpuInfo | None:
    """This machine's first GPU, or None without one. Read by nvidia-smi where it is installed: torch would create a
    CUDA context in the driver that holds GPU memory for the whole study, unseen by Ray's accounting."""
    import shutil
    import subprocess

    # torch's device 0 is the first of CUDA_VISIBLE_DEVICES (an index or a UUID, both of which --id takes)
    first = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip() or "0"
    if smi := shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.total,compute_cap", "--format=csv,noheader,nounits", f"--id={first}"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                mib, cap = (f.strip() for f in out.stdout.splitlines()[0].split(","))
                return GpuInfo(float(mib) * 1024**2, float(cap) >= 8.0)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    return GpuInfo(float(torch.cuda.get_device_properties(0).total_memory), torch.cuda.is_bf16_supported())


def device_memory() -> float | None:
    """Total memory of this machine's first GPU, or None without one."""
    gpu = device_gpu()
    return None if gpu is None else gpu.memory


def trial_precision(precision: str, gpu: GpuInfo | None) -> str:
    """The precision the trials train in on ``gpu``: ``auto`` is bf16 where the GPU supports it; fp32 (the larger
    estimate) when no GPU could be read."""
    if precision == "auto":
        return "bf16" if gpu is not None and gpu.bf16 else "fp32"
    return precision


def device_problem(device: str) -> str | None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and a CUDA device this machine has (torch is imported only then)."""
    import re

    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("auto", "cpu"):
        return None
    if match is None:
        return f"--device: unknown device '{device}'; valid: auto, cpu, cuda, cuda:N"
    import torch

    if not torch.cuda.is_available():
        return f"--device {device}: CUDA is not available on this machine; use --device cpu or auto"
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        return f"--device {device}: this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
    return None
