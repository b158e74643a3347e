"""Building a cache: one teacher pass over every split, in shards spread over Ray tasks or run in-process."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kd_methods import DERIVED_SIGNALS, SignalSpec
from orchestrator.cache.key import (
    CACHE_FORMAT,
    DTYPES,
    CacheCorruptError,
    CacheRequest,
    fingerprint_folder,
    sha256_file,
)
from orchestrator.cache.serve import _manifest, record_verified, verify
from orchestrator.core.paths import partial_folder
from tasks import SPLITS, TaskData


def _teacher_fields(
    teacher: Any, ids: list[list[int]], request: CacheRequest, device: torch.device
) -> dict[str, np.ndarray]:
    """Run the teacher over ``ids`` (one shard) and return its fields, rows in the order of ``ids``."""
    spec = request.spec
    need_tokens = sorted(set(spec.token_layers).union(*[set(d.layers) for d in request.derived]))
    run_spec = SignalSpec(logits=True, cls_layers=spec.cls_layers, token_layers=tuple(need_tokens))
    lengths = [len(x) for x in ids]
    # Length-sorted batches waste little on padding; rows are put back in order below.
    order = sorted(range(len(ids)), key=lambda i: -lengths[i])
    out_rows: dict[str, list[tuple[int, np.ndarray]]] = {}
    for start in range(0, len(order), request.batch_size):
        batch = order[start : start + request.batch_size]
        width = max(lengths[i] for i in batch)
        x = torch.full((len(batch), width), teacher.pad_id, dtype=torch.long)
        m = torch.zeros((len(batch), width), dtype=torch.long)
        for b, i in enumerate(batch):
            x[b, : lengths[i]] = torch.tensor(ids[i])
            m[b, : lengths[i]] = 1
        bf16 = request.precision == "bf16"
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            sig = teacher.signals(x.to(device), m.to(device), run_spec)
            fields: dict[str, Tensor] = {"logits": sig.logits.float()}
            for layer in spec.cls_layers:
                fields[f"cls.{layer}"] = sig.cls[layer]
            for layer in spec.token_layers:
                fields[f"tokens.{layer}"] = sig.tokens[layer]
            for d in (
                request.derived
            ):  # e.g. CKD's Gram numbers, computed by the signal kind the method registered
                fields.update(DERIVED_SIGNALS[d.kind].build([sig.tokens[layer] for layer in d.layers], d))
        _keep_rows(fields, batch, lengths, DTYPES[request.dtype], out_rows)
    return _assemble(out_rows, lengths)


def _keep_rows(
    fields: dict[str, Tensor], batch: list[int], lengths: list[int], store: Any,
    out_rows: dict[str, list[tuple[int, np.ndarray]]],
) -> None:  # fmt: skip
    """A batch's fields on the host, one row per sample (token-level fields cut to the sample's real tokens)."""
    for name, value in fields.items():
        arr = value.detach().cpu()
        # Logits and derived numbers stay float32 (CKD's relations cancel badly in half precision).
        keep32 = name == "logits" or not name.startswith(("cls.", "tokens."))
        arr = arr.float().numpy() if keep32 else arr.float().numpy().astype(store)
        rows = out_rows.setdefault(name, [])
        for b, i in enumerate(batch):
            row = arr[b]
            if name != "logits" and not name.startswith("cls."):
                row = row[: lengths[i]]  # token-level: keep the real tokens only
            rows.append((i, row))


def _assemble(out_rows: dict[str, list[tuple[int, np.ndarray]]], lengths: list[int]) -> dict[str, np.ndarray]:
    """Per-sample fields stacked; token-level fields concatenated (ragged) with ``offsets`` marking each sample."""
    per_sample: dict[str, list[np.ndarray]] = {}
    ragged: dict[str, list[np.ndarray]] = {}
    for name, rows in out_rows.items():
        rows.sort(key=lambda r: r[0])
        target = per_sample if (name == "logits" or name.startswith("cls.")) else ragged
        target[name] = [r for _, r in rows]
    result = {name: np.stack(rows) for name, rows in per_sample.items()}
    if ragged:
        result["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for name, rows in ragged.items():
            result[name] = np.concatenate(rows, axis=0)
    return result


def build_shard(
    teacher_dir: str,
    num_labels: int,
    ids: list[list[int]],
    request: CacheRequest,
    out_dir: str,
    device: str = "auto",
    features: bool = True,
) -> dict[str, Any]:
    """Compute one shard's fields and write them as .npy files; returns their checksums and sizes.

    ``features=False`` (validation and test shards) keeps the logits only: trials train on the training split's
    signals, and the teacher's predictions on the other splits are all the analysis needs."""
    if not features:
        request = replace(request, spec=SignalSpec(logits=True), derived=())
    from models.teacher import Teacher
    from orchestrator.core.device import resolve_device

    dev = resolve_device(device)
    teacher = Teacher.load(teacher_dir, num_labels).to(dev).eval()
    start = time.perf_counter()
    fields = _teacher_fields(teacher, ids, request, dev)
    seconds = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, arr in fields.items():
        path = out / f"{name}.npy"
        try:
            np.save(path, arr)
        except (
            OSError
        ) as err:  # numpy's short write ("N requested and M written") sets no errno nor file name
            if err.errno is not None:
                raise
            raise OSError(errno.ENOSPC, f"No space left on device ({err})", str(path)) from err
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "shape": list(arr.shape)}
    return {"files": files, "samples": len(ids), "tokens": int(sum(map(len, ids))), "seconds": seconds}


@dataclass
class BuildReport:
    path: Path
    key: str
    built: bool  # False when an existing cache was found
    seconds: float = 0.0
    bytes: int = 0
    rebuilt_reason: str | None = None


def _encode_splits(
    teacher_dir: str, data: TaskData, num_labels: int, max_length: int
) -> dict[str, list[list[int]]]:
    from models.teacher import Teacher

    teacher = Teacher.load(teacher_dir, num_labels)
    return {s: teacher.encode(data.split(s), max_length) for s in SPLITS}


def cache_root(storage: str | Path) -> Path:
    return Path(storage) / "teacher_cache"


def _shard_jobs(request: CacheRequest, encoded: dict[str, list[list[int]]]) -> list[tuple[str, int, int]]:
    """(split, start, end) of every shard, ``request.shard_samples`` samples each."""
    jobs: list[tuple[str, int, int]] = []
    for split in SPLITS:
        n = len(encoded[split])
        if n == 0:
            raise ValueError(f"split '{split}' of task '{request.task}' is empty: nothing to cache")
        for s0 in range(0, n, request.shard_samples):
            jobs.append((split, s0, min(n, s0 + request.shard_samples)))
    return jobs


def _run_shards(
    shard_args: list[tuple],
    use_ray: bool | None,
    gpus_per_task: float | None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Build the shards as Ray tasks (a GPU each when the cluster has them) or one after another here;
    ``progress(done, total)`` after each shard (the study's stage in progress, core/progress.py)."""
    if use_ray is None:
        import ray

        use_ray = ray.is_initialized()
    if use_ray:
        import ray

        gpus = gpus_per_task
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=2)(build_shard)
        refs = [remote.remote(*a) for a in shard_args]
        try:
            left = list(refs)
            while progress is not None and left:
                _, left = ray.wait(left, num_returns=1)
                progress(len(refs) - len(left), len(refs))
            return ray.get(refs)
        except BaseException:  # one shard failed (a full disk): the others end before the folder is removed
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            ray.wait(refs, num_returns=len(refs), timeout=30)
            raise
    out = []
    for a in shard_args:
        out.append(build_shard(*a))
        if progress is not None:
            progress(len(out), len(shard_args))
    return out


def get_or_build(
    request: CacheRequest,
    data: TaskData,
    num_labels: int,
    storage: str | Path,
    use_ray: bool | None = None,
    device: str = "auto",
    gpus_per_task: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Find the cache for ``request`` under ``storage`` or build it (exactly one teacher pass); a corrupt or
    incomplete cache is rebuilt and the reason reported."""
    data_fingerprint = data.fingerprint()
    key = request.key(fingerprint_folder(request.teacher_dir), data_fingerprint)
    path = cache_root(storage) / key
    reason = None
    if path.exists():
        try:
            verify(path)
            record_verified(path)  # the trials of this run check sizes only (serve.VERIFIED_FILE)
            return BuildReport(path, key, built=False, bytes=_manifest(path)["bytes"])
        except CacheCorruptError as err:
            reason = str(err)
            shutil.rmtree(path, ignore_errors=True)

    start = time.perf_counter()
    encoded = _encode_splits(request.teacher_dir, data, num_labels, request.max_length)
    tmp = partial_folder(path)  # a killed builder's leftovers (GBs for a paper-size cache) go first
    try:
        manifest = _build_into(tmp, key, request, encoded, num_labels, data_fingerprint, use_ray, device,
                               gpus_per_task, progress)  # fmt: skip
    except BaseException:  # a full disk, a failed shard, Ctrl-C: no half-built folder is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["build_seconds"] = time.perf_counter() - start
    total = manifest["bytes"]
    try:
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists():
            raise  # the manifest did not fit on the disk
        # Another builder finished first: keep theirs, drop ours (both hold the same content).
        return BuildReport(path, key, built=False, bytes=_manifest(path)["bytes"])
    _log_pass(storage, key, request)
    record_verified(path)  # its checksums were computed as it was written
    return BuildReport(
        path, key, built=True, seconds=manifest["build_seconds"], bytes=total, rebuilt_reason=reason
    )


def _build_into(
    tmp: Path, key: str, request: CacheRequest, encoded: dict[str, list[list[int]]], num_labels: int,
    data_fingerprint: str, use_ray: bool | None, device: str, gpus_per_task: float | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:  # fmt: skip
    """Every shard written under ``tmp``; returns the cache's manifest (without its build time)."""
    jobs = _shard_jobs(request, encoded)
    shard_args = [
        (
            request.teacher_dir,
            num_labels,
            encoded[split][s0:s1],
            request,
            str(tmp / split / f"shard-{s0:09d}"),
            device,
            split == "train",
        )
        for split, s0, s1 in jobs
    ]
    results = _run_shards(shard_args, use_ray, gpus_per_task, progress)
    shards: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    total = 0
    for (split, s0, s1), res in zip(jobs, results, strict=True):
        shards[split].append({"dir": f"{split}/shard-{s0:09d}", "start": s0, "end": s1, **res})
        total += sum(f["bytes"] for f in res["files"].values())
    return {
        "format": CACHE_FORMAT,
        "key": key,
        "request": request.manifest_request(),
        "num_labels": num_labels,
        "data_fingerprint": data_fingerprint,  # trials check it: signals are looked up by sample index
        "samples": {s: len(encoded[s]) for s in SPLITS},
        "shards": shards,
        "bytes": total,
        "teacher_passes": 1,
    }


def _log_pass(storage: str | Path, key: str, request: CacheRequest) -> None:
    with (cache_root(storage) / "passes.jsonl").open("a") as f:
        f.write(
            json.dumps(
                {"key": key, "teacher": request.teacher_dir, "task": request.task, "time": time.time()}
            )
            + "\n"
        )


def teacher_passes(storage: str | Path, keys: set[str] | None = None) -> int:
    """How many teacher passes (cache builds, rebuilds included) were made under ``storage``; with ``keys``, for
    those caches only. Each pass is logged when its cache is in place, so a driver killed before it recorded the
    pass in MLflow does not make it vanish from the count."""
    log = cache_root(storage) / "passes.jsonl"
    if not log.exists():
        return 0
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return sum(1 for r in rows if keys is None or r.get("key") in keys)
