"""The exact LM teacher cache: one teacher pass storing final hidden states, plus the output head, once.

Why not logits (docs/COMPLETION_STUDY.md, "Stages"): a 50k-vocabulary distribution is ~100 KB per position in fp16, but a GPT-2's
logits are exactly ``h @ W^T`` (a bias-free head tied to the embeddings), so the final hidden state ``h`` (after
``ln_f``; ``H`` numbers) plus one copy of ``W`` rebuilds the full distribution at any temperature, and ``h`` is also
the cosine target of the DistilBERT loss. Stored per cache (under ``<storage>/teacher_cache/<key>/``):

- ``train/shard-<start>/hidden.npy`` ``[blocks, block_size, H]`` in ``dtype`` (fp16 by default; fp32 for an exact
  copy), memory-mapped by the reader; ``mask.npy`` ``[blocks, block_size]`` int8 (1 = real token);
- ``head.safetensors``: ``lm_head.weight`` ``[V, H]`` (and ``lm_head.bias``) in float32;
- ``manifest.json``: the request, the content key, the data fingerprint, shapes, every file's sha256 (the shard
  layout of the classification cache, so ``cache.serve.verify`` / ``load_arrays`` check and open it).

Key: the teacher folder's content (``fingerprint_folder``), the token blocks' fingerprint (ids and mask, so block
size and tokenizer are in it), the block size, the storage dtype and the signal set. Only the training split is
cached: validation perplexity is the student's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from orchestrator.cache.build import BuildReport, _log_pass, cache_root
from orchestrator.cache.key import CacheCorruptError, fingerprint_folder, sha256_file
from orchestrator.cache.serve import _manifest, verify
from orchestrator.core.paths import partial_folder

LM_CACHE_FORMAT = 1
LM_SIGNALS = "final_hidden+head"
HEAD_FILE = "head.safetensors"
STORE_DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class LMCacheRequest:
    """One (teacher, token blocks) pass. ``dtype`` stores ``h`` (or the top-k logits); the head is float32.

    ``topk`` > 0 asks for the compact, *approximate* ``cached-topk`` signal instead (``orchestrator/cache/lm_topk.py``):
    the k largest logits and their ids, plus the exact log-sum-exp at each of ``lse_temperatures``; no hidden
    states and no head (so no cosine term)."""

    teacher_dir: str
    block_size: int
    dtype: str = "float16"
    task: str = "completion"
    batch_size: int = 8
    shard_blocks: int = 1024
    trust_remote_code: bool = False
    topk: int = 0
    lse_temperatures: tuple[float, ...] = (1.0, 2.0)

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise ValueError(f"LM cache dtype must be one of {list(STORE_DTYPES)}, got '{self.dtype}'")
        if self.topk < 0 or (self.topk and not self.lse_temperatures):
            raise ValueError(
                "LM cache topk must be >= 0, and a top-k cache needs at least one LSE temperature"
            )
        object.__setattr__(self, "lse_temperatures", tuple(sorted({float(t) for t in self.lse_temperatures})))

    @property
    def signals(self) -> str:
        if not self.topk:
            return LM_SIGNALS
        return f"topk:{self.topk};lse_T={','.join(f'{t:g}' for t in self.lse_temperatures)}"

    def key(self, teacher_fingerprint: str, data_fingerprint: str) -> str:
        body = json.dumps(
            {
                "format": LM_CACHE_FORMAT,
                "kind": "lm",
                "teacher": teacher_fingerprint,
                "data": data_fingerprint,
                "task": self.task,
                "block_size": self.block_size,
                "signals": self.signals,
                "dtype": self.dtype,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:24]


def lm_cache_bytes(
    blocks: int,
    block_size: int,
    hidden: int,
    vocab: int,
    dtype: str = "float16",
    topk: int = 0,
    n_temps: int = 2,
) -> int:
    """Bytes of a cache before building it. Exact: hidden states + mask per position and the float32 head; top-k:
    k ids (2 bytes when the vocabulary fits uint16, else 4) and k logits, |T| float32 LSEs and the mask."""
    item = np.dtype(STORE_DTYPES[dtype]).itemsize
    positions = blocks * block_size
    if topk:
        id_bytes = 2 if vocab <= 65536 else 4
        return positions * (topk * (id_bytes + item) + 4 * n_temps + 1)
    return positions * (hidden * item + 1) + vocab * hidden * 4


@torch.no_grad()
def _write_shard(teacher: Any, blocks: Any, start: int, end: int, out: Path, request: LMCacheRequest) -> dict:
    """Run the teacher over blocks ``start..end`` and write its fields (``hidden``, or the top-k fields) as
    memory-mapped ``.npy`` files filled batch by batch, plus ``mask.npy``; returns the shard's manifest entry
    (with, for top-k, the kept probability mass summed over real tokens, per temperature)."""
    from orchestrator.cache.lm_topk import id_dtype, topk_fields

    out.mkdir(parents=True, exist_ok=True)
    layer = teacher.shape.num_layers
    device = next(teacher.parameters()).device
    arrays: dict[str, np.ndarray] = {}
    mass = np.zeros(len(request.lse_temperatures))
    for b0 in range(start, end, request.batch_size):
        idx = torch.arange(b0, min(end, b0 + request.batch_size))
        ids, mask, _ = blocks.batch(idx, device)
        result = teacher(ids, mask)
        if request.topk:
            fields, kept = topk_fields(result.logits, mask, request.topk, request.lse_temperatures)
            mass += kept
        else:
            fields = {"hidden": result.hidden_states[layer]}
        for name, value in fields.items():
            arr = value.cpu().numpy()  # ``lse`` stays float32: it must be exact
            if name == "topk_ids":
                arr = arr.astype(id_dtype(teacher.vocab_size))
            elif name in ("hidden", "topk_logits"):
                arr = value.float().cpu().numpy().astype(STORE_DTYPES[request.dtype])
            if name not in arrays:
                shape = (end - start, *arr.shape[1:])
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", "w+", arr.dtype, shape)
            arrays[name][b0 - start : b0 - start + len(idx)] = arr
    for arr in arrays.values():
        arr.flush()
    names = [*arrays, "mask"]
    arrays.clear()
    np.save(out / "mask.npy", blocks.mask[start:end].to(torch.int8).numpy())
    files = {}
    for name in names:
        path = out / f"{name}.npy"
        shape = list(np.load(path, mmap_mode="r").shape)
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "shape": shape}
    entry: dict[str, Any] = {"start": start, "end": end, "files": files, "samples": end - start}
    if request.topk:
        entry["mass_kept_sum"] = mass.tolist()
    return entry


def _existing(path: Path) -> tuple[BuildReport | None, str | None]:
    if not path.exists():
        return None, None
    try:
        manifest = verify(path)
        head = manifest["head"]
        if head and sha256_file(path / head["file"]) != head["sha256"]:
            raise CacheCorruptError(f"{path / head['file']} does not match its checksum")
        return BuildReport(path, manifest["key"], built=False, bytes=manifest["bytes"]), None
    except (CacheCorruptError, KeyError, OSError) as err:
        shutil.rmtree(path, ignore_errors=True)
        return None, str(err)


def get_or_build_lm(
    request: LMCacheRequest, blocks: Any, storage: str | Path, device: str = "auto", teacher: Any = None
) -> BuildReport:
    """Find the cache for (``request``, ``blocks``) under ``storage`` or build it in exactly one teacher pass; a
    corrupt or incomplete cache is rebuilt and the reason reported. ``teacher``: the already loaded
    ``LMTeacher`` of ``request.teacher_dir`` (saves loading it again), else it is loaded."""
    from models.lm_teacher import LMTeacher
    from orchestrator.core.device import resolve_device

    data_fp = blocks.fingerprint()
    key = request.key(fingerprint_folder(request.teacher_dir), data_fp)
    path = cache_root(storage) / key
    found, reason = _existing(path)
    if found:
        return found
    if blocks.block_size != request.block_size:
        raise ValueError(
            f"blocks are {blocks.block_size} tokens long but the request says {request.block_size}"
        )
    start = time.perf_counter()
    dev = resolve_device(device)
    if teacher is None:
        teacher = LMTeacher.load(request.teacher_dir, trust_remote_code=request.trust_remote_code)
    teacher = teacher.to(dev).eval()
    tmp = partial_folder(path)  # a killed builder's leftovers go first
    try:  # a full disk (or Ctrl-C) leaves no half-built folder behind
        shards = []
        for s0 in range(0, len(blocks), request.shard_blocks):
            s1 = min(len(blocks), s0 + request.shard_blocks)
            entry = _write_shard(teacher, blocks, s0, s1, tmp / "train" / f"shard-{s0:09d}", request)
            entry["tokens"] = int(blocks.mask[s0:s1].sum())
            shards.append({"dir": f"train/shard-{s0:09d}", **entry})
        head_entry: dict[str, Any] = {}
        if not request.topk:  # the exact cache rebuilds logits from h with the head; top-k needs neither
            head = {k: v.float().cpu().contiguous() for k, v in teacher.head().items()}
            save_file(head, str(tmp / HEAD_FILE))
            head_bytes = (tmp / HEAD_FILE).stat().st_size
            head_entry = {"file": HEAD_FILE, "sha256": sha256_file(tmp / HEAD_FILE), "bytes": head_bytes}
        total = head_entry.get("bytes", 0) + sum(f["bytes"] for sh in shards for f in sh["files"].values())
        manifest = {
            "format": LM_CACHE_FORMAT,
            "kind": "lm",
            "key": key,
            "request": asdict(request),
            "signals": request.signals,
            "approximate": bool(request.topk),
            "data_fingerprint": data_fp,
            "samples": {"train": len(blocks)},
            "shards": {"train": shards},
            "head": head_entry,
            "num_layers": teacher.shape.num_layers,
            "hidden_size": teacher.shape.hidden_size,
            "vocab_size": teacher.vocab_size,
            "bytes": total,
            "build_seconds": time.perf_counter() - start,
            "teacher_passes": 1,
        }
        if (
            request.topk
        ):  # the share of the teacher's probability the top-k keep, mean over real tokens, per T
            kept = np.sum([sh.pop("mass_kept_sum") for sh in shards], axis=0) / max(blocks.tokens, 1)
            manifest["mass_kept"] = {f"{t:g}": float(m) for t, m in zip(request.lse_temperatures, kept)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, path)
    except OSError:  # another builder finished first: keep theirs (same content)
        shutil.rmtree(tmp, ignore_errors=True)
        return BuildReport(path, key, built=False, bytes=_manifest(path)["bytes"])
    _log_pass(storage, key, request)  # type: ignore[arg-type]  # reads teacher_dir and task only
    return BuildReport(
        path, key, built=True, seconds=manifest["build_seconds"], bytes=total, rebuilt_reason=reason
    )
