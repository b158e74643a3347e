"""A cache request, its content key, the fingerprints it is made of, and the size of a cache before it is built."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kd_methods import DERIVED_SIGNALS, DerivedRequest, ModelShape, SignalSpec, merge_derived

CACHE_FORMAT = 1
DTYPES = {"float16": np.float16, "float32": np.float32, "bfloat16": None}


class CacheCorruptError(RuntimeError):
    """A shard is missing or its checksum does not match the manifest."""


@dataclass(frozen=True)
class CacheRequest:
    """What to compute: the union of the signals every trial of a study needs from one (teacher, task)."""

    teacher_dir: str
    task: str
    spec: SignalSpec
    max_length: int = 512
    dtype: str = "float16"  # storage dtype of hidden states; logits are always float32
    # Numbers derived from token states that methods read in their place (``KDMethod.cache_needs``), one request
    # per kind holding every reader's teacher layers.
    derived: tuple[DerivedRequest, ...] = ()
    batch_size: int = 32
    shard_samples: int = 4096  # samples per shard (and per Ray task)
    # The teacher pass's precision: fp32, or bf16 autocast (a GPU's fast path; signals within bf16's ~1e-2
    # relative error of fp32). Explicit, never "auto": the key must not depend on the machine that builds it.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"cache dtype must be 'float16' or 'float32', got '{self.dtype}'")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"cache precision must be 'fp32' or 'bf16', got '{self.precision}'")
        object.__setattr__(self, "derived", merge_derived(self.derived))

    def derived_of(self, kind: str) -> DerivedRequest | None:
        return next((d for d in self.derived if d.kind == kind), None)

    def manifest_request(self) -> dict[str, Any]:
        """The request as a cache's manifest records it (``derived_from_manifest`` reads the derived part back)."""
        out = {k: v for k, v in asdict(self).items() if k != "derived"}
        out["spec"] = self.spec.to_dict()
        for kind, signal in DERIVED_SIGNALS.items():
            out.update(signal.manifest_entries(self.derived_of(kind)))
        return out

    def key(self, teacher_fingerprint: str, data_fingerprint: str) -> str:
        body = json.dumps(
            {
                "format": CACHE_FORMAT,
                "teacher": teacher_fingerprint,
                "data": data_fingerprint,
                "task": self.task,
                "max_length": self.max_length,
                "spec": self.spec.key(),
                "dtype": self.dtype,
                **{
                    k: v
                    for kind, sig in DERIVED_SIGNALS.items()
                    for k, v in sig.key_entries(self.derived_of(kind)).items()
                },
                # Only when bf16, so every fp32 cache built before this setting existed keeps its key.
                **({"precision": self.precision} if self.precision != "fp32" else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:24]


def derived_from_manifest(request: dict[str, Any]) -> dict[str, DerivedRequest]:
    """The derived signals a cache holds, by kind, from its manifest's ``request``."""
    found = {kind: sig.from_manifest(request) for kind, sig in DERIVED_SIGNALS.items()}
    return {kind: d for kind, d in found.items() if d is not None}


def fingerprint_folder(folder: str | Path) -> str:
    """sha256 over a model folder's files (weights, config, tokenizer), ignoring our own training leftovers."""
    root = Path(folder)
    if not root.is_dir():
        return hashlib.sha256(f"hub:{folder}".encode()).hexdigest()
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "_train" not in p.parts):
        if path.name in ("finetune.json", "test_predictions.json"):
            continue
        h.update(str(path.relative_to(root)).encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Planning: bytes before building


def plan_bytes(
    request: CacheRequest,
    samples: dict[str, int],
    tokens: dict[str, int],
    teacher: ModelShape,
    num_labels: int,
) -> dict[str, Any]:
    """Bytes per signal, per sample and in total, for ``samples``/``tokens`` per split (tokens = teacher tokens).
    Hidden-state signals are stored for the training split only."""
    item = np.dtype(request.dtype).itemsize
    n = sum(samples.values())
    # Hidden-state signals are kept for the training split only; every split keeps its logits.
    n_train, t = samples.get("train", 0), tokens.get("train", 0)
    per_signal: dict[str, int] = {"logits": n * num_labels * 4}
    for layer in request.spec.cls_layers:
        per_signal[f"cls.{layer}"] = n_train * teacher.hidden_size * item
    for layer in request.spec.token_layers:
        per_signal[f"tokens.{layer}"] = t * teacher.hidden_size * item
    for d in request.derived:  # float32 numbers per token (CKD: Gram numbers)
        per_signal[d.kind] = t * DERIVED_SIGNALS[d.kind].values_per_token(d) * 4
    if request.spec.token_layers or request.derived:
        per_signal["offsets"] = (n_train + 1) * 8
    total = sum(per_signal.values())
    return {
        "samples": n,
        "tokens": t,
        "per_signal": per_signal,
        "total_bytes": total,
        "bytes_per_sample": total / max(n, 1),
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
