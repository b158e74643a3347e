"""Reading the exact LM cache: memory-mapped final hidden states and the head, the full logits rebuilt on demand.

``LMCachedTeacher`` is a ``TeacherSource``: ``signals("train", indices, spec)`` returns the final hidden states of
exactly the blocks at ``indices`` (``tokens[L]``), their mask, and the head in ``extras`` (``lm_head.weight``), from
which the ``distil`` method rebuilds the logits in chunks. ``logits`` / ``log_probs`` rebuild the full teacher
distribution for any temperature directly (the exactness tests, analysis).

A ``cached-topk`` cache (``LMCacheRequest.topk`` > 0; approximate, see ``lm_topk.py``) is read by the same class:
its ``signals`` carry the top-k ids, logits and exact LSEs in ``extras`` and no hidden state, ``approximate`` is
True and ``mass_kept`` gives the kept probability share per temperature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from kd_methods import SignalSpec, TeacherSignals
from orchestrator.cache.key import CacheCorruptError, sha256_file
from orchestrator.cache.lm_cache import LM_SIGNALS
from orchestrator.cache.lm_topk import topk_signals
from orchestrator.cache.serve import load_arrays

HEAD_WEIGHT, HEAD_BIAS = "lm_head.weight", "lm_head.bias"


class LMCachedTeacher:
    """The cached teacher of one (teacher, token blocks) pair; rows follow the requested block indices."""

    def __init__(self, path: str | Path, mmap: bool = True, device: torch.device | str = "cpu") -> None:
        self.path = Path(path)
        manifest, arrays = load_arrays(self.path, mmap=mmap)
        signals = manifest.get("signals", "")
        if manifest.get("kind") != "lm" or not (signals == LM_SIGNALS or signals.startswith("topk:")):
            raise CacheCorruptError(f"{self.path} is not an LM cache")
        self.manifest = manifest
        self.approximate = bool(manifest.get("approximate", False))
        self.device = torch.device(device)
        self.head: dict[str, Tensor] = {}
        if manifest["head"]:
            head_file = self.path / manifest["head"]["file"]
            if not head_file.resolve().is_relative_to(self.path.resolve()):
                raise CacheCorruptError(f"{self.path}: the manifest's head file escapes the cache folder")
            if sha256_file(head_file) != manifest["head"]["sha256"]:
                raise CacheCorruptError(f"{head_file} does not match its checksum")
            self.head = {k: v.to(self.device) for k, v in load_file(str(head_file)).items()}
        self.layer = int(manifest["num_layers"])
        self.shards: list[tuple[int, int, dict[str, np.ndarray]]] = [
            (sh["start"], sh["end"], {name: arrays[f"{sh['dir']}/{name}.npy"] for name in sh["files"]})
            for sh in sorted(manifest["shards"]["train"], key=lambda s: s["start"])
        ]
        self._starts = np.array([s[0] for s in self.shards])

    @property
    def mass_kept(self) -> dict[str, float]:
        """Top-k caches: the mean share of the teacher's probability the kept tokens hold, per temperature."""
        return dict(self.manifest.get("mass_kept", {}))

    @property
    def nbytes(self) -> int:
        return int(self.manifest["bytes"])

    def check_data(self, fingerprint: str) -> None:
        """Raise unless the cache was built from the blocks whose ``LMBlocks.fingerprint()`` is ``fingerprint``."""
        built_from = self.manifest["data_fingerprint"]
        if built_from != fingerprint:
            raise ValueError(
                f"LM cache {self.manifest['key']} was built from other token blocks (fingerprint {built_from[:12]}) "
                f"than this trial's ({fingerprint[:12]}): same files, tokenizer and block size are needed"
            )

    def _rows(self, split: str, indices: Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Every stored field of the blocks at ``indices``, stacked in request order."""
        if split != "train":
            raise KeyError(f"the LM cache holds the train split only, not '{split}'")
        idx = indices.cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
        n = self.manifest["samples"]["train"]
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"block index outside the cached train split (size {n})")
        shard_ids = np.searchsorted(self._starts, idx, side="right") - 1
        names = self.shards[0][2]
        return {
            name: np.stack([self.shards[s][2][name][i - self.shards[s][0]] for i, s in zip(idx, shard_ids)])
            for name in names
        }

    def hidden(self, split: str, indices: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """Final hidden states ``[B, N, H]`` (float32) and mask ``[B, N]`` (long) of the blocks at ``indices``."""
        if self.approximate:
            raise KeyError(f"LM cache {self.manifest['key']} is a top-k cache: it holds no hidden states")
        rows = self._rows(split, indices)
        h = torch.from_numpy(rows["hidden"]).to(self.device, torch.float32)
        return h, torch.from_numpy(rows["mask"]).to(self.device, torch.long)

    def logits(self, split: str, indices: Tensor | np.ndarray, temperature: float = 1.0) -> Tensor:
        """The teacher's full logits ``[B, N, V]`` divided by ``temperature``: ``h @ W^T (+ b)``, rebuilt."""
        h, _ = self.hidden(split, indices)
        z = h @ self.head[HEAD_WEIGHT].T
        if HEAD_BIAS in self.head:
            z = z + self.head[HEAD_BIAS]
        return z / temperature

    def log_probs(self, split: str, indices: Tensor | np.ndarray, temperature: float = 1.0) -> Tensor:
        return torch.log_softmax(self.logits(split, indices, temperature), dim=-1)

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        bad = [layer for layer in spec.token_layers if layer != self.layer]
        if spec.cls_layers or bad:
            raise KeyError(
                f"LM cache {self.manifest['key']} holds the final hidden state (layer {self.layer}) only; "
                f"asked for cls layers {list(spec.cls_layers)} / token layers {bad}"
            )
        if self.approximate:
            if spec.logits:
                raise KeyError(
                    f"LM cache {self.manifest['key']} is top-k (approximate): it cannot give full logits"
                )
            rows = self._rows(split, indices)
            temps = self.manifest["request"]["lse_temperatures"]
            extras = topk_signals(rows["topk_ids"], rows["topk_logits"], rows["lse"], temps)
            mask = torch.from_numpy(rows["mask"]).long()
            return TeacherSignals(token_mask=mask, extras=extras).to(self.device)
        h, mask = self.hidden(split, indices)
        out = TeacherSignals(tokens={self.layer: h}, token_mask=mask, extras=dict(self.head))
        if spec.logits:
            out.logits = self.logits(split, indices)
        return out

    def describe(self) -> dict[str, Any]:
        req = self.manifest["request"]
        return {
            "key": self.manifest["key"],
            "dtype": req["dtype"],
            "bytes": self.nbytes,
            "signals": LM_SIGNALS,
        }
