"""Which device and precision a run uses: resolved where it runs (``auto`` means what this machine has). Torch is
imported inside the functions, so a command's parser and ``--plan`` can import this module for free."""

from __future__ import annotations

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
