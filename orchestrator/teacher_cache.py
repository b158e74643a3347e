"""Teacher signals computed once per (teacher, task, signal set) and shared by every trial.

Build: one batched eval-mode pass of the fine-tuned teacher over train, validation and test, spread over Ray tasks
(one per chunk of samples, each on a GPU when the cluster has them) or run in-process. Each chunk becomes a
*shard*: one ``.npy`` file per field, checksummed (sha256) in the cache's ``manifest.json``.

Key: content-addressed by the teacher's weight/config/tokenizer files, the data fingerprint, the teacher's max
length, the signal set, the storage dtype and the precomputed relation sets, so a resumed study, another trial or
another study finds the signals instead of recomputing them.

Fields per split (``n`` samples, ``T`` teacher tokens in all, ``C`` classes, ``H`` teacher width):
- ``logits`` [n, C] float32 (also the teacher's predictions, kept for the behaviour analysis);
- ``cls.<l>`` [n, H] per requested layer;
- ``tokens.<l>`` [T, H] per requested layer, ragged: ``offsets`` [n + 1] marks each sample's rows;
- ``ckd.band`` [T, L, 4w+1] and ``ckd.layer_gram`` [T, L, L] (float32): CKD's teacher side as Gram numbers over the
  union L of the teacher layers any CKD student maps to. Every student's word and layer relations follow from
  them by a few elementwise operations at serve time, at 4w+1+L numbers per token and layer instead of H; a cached
  CKD step computes only the student side (ragged like tokens).

Serve: ``CachedTeacher.signals(split, indices, spec)`` returns exactly the rows of ``indices``, in their order, so
any shuffling and batch size pairs every sample with its own signals. The cache is either loaded into the Ray
object store (when it fits a configurable share of it; trials read it zero-copy) or memory-mapped from the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kd_methods import ModelShape, SignalSpec, TeacherSignals
from tasks import SPLITS, TaskData

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
    ckd_layer_sets: tuple[tuple[int, ...], ...] = ()  # teacher layers of each CKD student's map (0 included)
    ckd_window: int = 10
    batch_size: int = 32
    shard_samples: int = 4096  # samples per shard (and per Ray task)

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"cache dtype must be 'float16' or 'float32', got '{self.dtype}'")
        # Each set is CKD's ordered layer map, repeats included (a student deeper than its teacher).
        sets = tuple(sorted({tuple(s) for s in self.ckd_layer_sets}))
        object.__setattr__(self, "ckd_layer_sets", sets)

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
                "ckd": [list(s) for s in self.ckd_layer_sets],
                "window": self.ckd_window if self.ckd_layer_sets else None,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:24]


def ckd_union(sets: Sequence[Sequence[int]]) -> list[int]:
    """The teacher layers whose Gram numbers a cache stores for CKD: every layer any CKD student maps to."""
    return sorted(set().union(*[set(s) for s in sets])) if sets else []


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


def ckd_values_per_token(layers: Sequence[int], window: int) -> int:
    """Float32 numbers CKD stores per token: each layer's banded Gram (4w+1) and the layer Gram (L x L)."""
    k = len(layers)
    return k * (4 * window + 1) + k * k


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
    if request.ckd_layer_sets:
        union = ckd_union(request.ckd_layer_sets)
        per_signal["ckd"] = t * ckd_values_per_token(union, request.ckd_window) * 4
    if request.spec.token_layers or request.ckd_layer_sets:
        per_signal["offsets"] = (n_train + 1) * 8
    total = sum(per_signal.values())
    return {
        "samples": n,
        "tokens": t,
        "per_signal": per_signal,
        "total_bytes": total,
        "bytes_per_sample": total / max(n, 1),
    }


# ---------------------------------------------------------------------------------------------------------------
# Building


def _teacher_fields(
    teacher: Any, ids: list[list[int]], request: CacheRequest, device: torch.device
) -> dict[str, np.ndarray]:
    """Run the teacher over ``ids`` (one shard) and return its fields, rows in the order of ``ids``."""
    from kd_methods.ckd import teacher_grams

    spec = request.spec
    need_tokens = sorted(set(spec.token_layers).union(*[set(s) for s in request.ckd_layer_sets]))
    run_spec = SignalSpec(logits=True, cls_layers=spec.cls_layers, token_layers=tuple(need_tokens))
    store = DTYPES[request.dtype]
    per_sample: dict[str, list[np.ndarray]] = {}
    ragged: dict[str, list[np.ndarray]] = {}
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
        with torch.no_grad():
            sig = teacher.signals(x.to(device), m.to(device), run_spec)
            fields: dict[str, Tensor] = {"logits": sig.logits.float()}
            for layer in spec.cls_layers:
                fields[f"cls.{layer}"] = sig.cls[layer]
            for layer in spec.token_layers:
                fields[f"tokens.{layer}"] = sig.tokens[layer]
            if request.ckd_layer_sets:
                union = ckd_union(request.ckd_layer_sets)
                bands, gram = teacher_grams(
                    [sig.tokens[layer].float() for layer in union], request.ckd_window
                )
                fields["ckd.band"], fields["ckd.layer_gram"] = bands, gram
        for name, value in fields.items():
            arr = value.detach().cpu()
            # Logits and CKD's Gram numbers stay float32 (the relations cancel badly in half precision).
            keep32 = name == "logits" or name.startswith("ckd.")
            arr = arr.float().numpy() if keep32 else arr.float().numpy().astype(store)
            rows = out_rows.setdefault(name, [])
            for b, i in enumerate(batch):
                row = arr[b]
                if name != "logits" and not name.startswith("cls."):
                    row = row[: lengths[i]]  # token-level: keep the real tokens only
                rows.append((i, row))
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
        request = replace(request, spec=SignalSpec(logits=True), ckd_layer_sets=())
    from models.teacher import Teacher
    from orchestrator.trainer import resolve_device

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
        np.save(path, arr)
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


def get_or_build(
    request: CacheRequest,
    data: TaskData,
    num_labels: int,
    storage: str | Path,
    use_ray: bool | None = None,
    device: str = "auto",
    gpus_per_task: float | None = None,
) -> BuildReport:
    """Find the cache for ``request`` under ``storage`` or build it (exactly one teacher pass); a corrupt or
    incomplete cache is rebuilt and the reason reported."""
    key = request.key(fingerprint_folder(request.teacher_dir), data.fingerprint())
    path = cache_root(storage) / key
    reason = None
    if path.exists():
        try:
            verify(path)
            return BuildReport(path, key, built=False, bytes=_manifest(path)["bytes"])
        except CacheCorruptError as err:
            reason = str(err)
            shutil.rmtree(path, ignore_errors=True)

    start = time.perf_counter()
    encoded = _encode_splits(request.teacher_dir, data, num_labels, request.max_length)
    tmp = cache_root(storage) / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
    jobs: list[tuple[str, int, int]] = []
    for split in SPLITS:
        n = len(encoded[split])
        if n == 0:
            raise ValueError(f"split '{split}' of task '{request.task}' is empty: nothing to cache")
        for s0 in range(0, n, request.shard_samples):
            jobs.append((split, s0, min(n, s0 + request.shard_samples)))

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
    if use_ray is None:
        import ray

        use_ray = ray.is_initialized()
    if use_ray:
        import ray

        gpus = gpus_per_task
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=2)(build_shard)
        results = ray.get([remote.remote(*a) for a in shard_args])
    else:
        results = [build_shard(*a) for a in shard_args]

    shards: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    total = 0
    for (split, s0, s1), res in zip(jobs, results, strict=True):
        shards[split].append({"dir": f"{split}/shard-{s0:09d}", "start": s0, "end": s1, **res})
        total += sum(f["bytes"] for f in res["files"].values())
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "request": {**asdict(request), "spec": request.spec.to_dict()},
        "num_labels": num_labels,
        "samples": {s: len(encoded[s]) for s in SPLITS},
        "shards": shards,
        "bytes": total,
        "build_seconds": time.perf_counter() - start,
        "teacher_passes": 1,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    try:
        os.replace(tmp, path)
    except OSError:
        # Another builder finished first: keep theirs, drop ours (both hold the same content).
        shutil.rmtree(tmp, ignore_errors=True)
        return BuildReport(path, key, built=False, bytes=_manifest(path)["bytes"])
    _log_pass(storage, key, request)
    return BuildReport(
        path, key, built=True, seconds=manifest["build_seconds"], bytes=total, rebuilt_reason=reason
    )


def _log_pass(storage: str | Path, key: str, request: CacheRequest) -> None:
    with (cache_root(storage) / "passes.jsonl").open("a") as f:
        f.write(
            json.dumps(
                {"key": key, "teacher": request.teacher_dir, "task": request.task, "time": time.time()}
            )
            + "\n"
        )


def teacher_passes(storage: str | Path) -> int:
    """How many teacher passes (cache builds) were made under ``storage``."""
    log = cache_root(storage) / "passes.jsonl"
    return sum(1 for line in log.read_text().splitlines() if line.strip()) if log.exists() else 0


def _manifest(path: Path) -> dict[str, Any]:
    mf = path / "manifest.json"
    if not mf.exists():
        raise CacheCorruptError(f"{mf} is missing")
    try:
        return json.loads(mf.read_text())
    except json.JSONDecodeError as err:
        raise CacheCorruptError(f"{mf} is unreadable: {err}") from err


_VERIFIED: set[tuple[str, int, int]] = set()


def verify(path: Path, force: bool = False) -> dict[str, Any]:
    """Check every shard file against its sha256; raises CacheCorruptError naming the first bad file.

    Hashing a large cache takes a while, so a process verifies each cache once (sizes are checked every time)."""
    manifest = _manifest(path)
    stamp = (str(path.resolve()), (path / "manifest.json").stat().st_mtime_ns, manifest["bytes"])
    full = force or stamp not in _VERIFIED
    for split_shards in manifest["shards"].values():
        for shard in split_shards:
            for name, info in shard["files"].items():
                f = path / shard["dir"] / f"{name}.npy"
                if not f.exists():
                    raise CacheCorruptError(f"shard file {f} is missing")
                if f.stat().st_size != info["bytes"] or (full and sha256_file(f) != info["sha256"]):
                    raise CacheCorruptError(f"shard file {f} does not match its checksum")
    _VERIFIED.add(stamp)
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# Serving


def load_arrays(
    path: Path, mmap: bool = True, check: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and every shard array, memory-mapped (or read into memory to put in the object store)."""
    manifest = verify(path) if check else _manifest(path)
    arrays = {}
    for split_shards in manifest["shards"].values():
        for shard in split_shards:
            for name in shard["files"]:
                rel = f"{shard['dir']}/{name}.npy"
                arrays[rel] = np.load(path / rel, mmap_mode="r" if mmap else None)
    return manifest, arrays


@dataclass
class _Shard:
    start: int
    end: int
    fields: dict[str, np.ndarray] = field(default_factory=dict)


class CachedTeacher:
    """A ``TeacherSource`` reading the cache: the signals of exactly the requested samples, in request order."""

    def __init__(
        self, manifest: dict[str, Any], arrays: dict[str, np.ndarray], ckd_layers: Sequence[int] | None = None
    ):
        self.manifest = manifest
        self.ckd_layers = tuple(ckd_layers) if ckd_layers else None
        req = manifest["request"]
        self.ckd_window = int(req.get("ckd_window", 10))
        union = ckd_union(req.get("ckd_layer_sets", []))
        if self.ckd_layers and not set(self.ckd_layers) <= set(union):
            raise KeyError(
                f"cache {manifest['key']} holds CKD Gram numbers for teacher layers {union}, "
                f"not for {list(self.ckd_layers)}"
            )
        self.ckd_index = [union.index(layer) for layer in self.ckd_layers] if self.ckd_layers else None
        self.splits: dict[str, list[_Shard]] = {}
        for split, shards in manifest["shards"].items():
            self.splits[split] = []
            for sh in sorted(shards, key=lambda s: s["start"]):
                fields = {name: arrays[f"{sh['dir']}/{name}.npy"] for name in sh["files"]}
                self.splits[split].append(_Shard(sh["start"], sh["end"], fields))
        self._starts = {s: np.array([sh.start for sh in v]) for s, v in self.splits.items()}

    @classmethod
    def open(
        cls, path: str | Path, ckd_layers: Sequence[int] | None = None, mmap: bool = True
    ) -> CachedTeacher:
        manifest, arrays = load_arrays(Path(path), mmap=mmap)
        return cls(manifest, arrays, ckd_layers)

    def _locate(self, split: str, indices: np.ndarray) -> Iterable[tuple[int, _Shard, int]]:
        starts = self._starts[split]
        shard_ids = np.searchsorted(starts, indices, side="right") - 1
        n = self.manifest["samples"][split]
        for b, (i, s) in enumerate(zip(indices.tolist(), shard_ids.tolist())):
            if not 0 <= i < n:
                raise IndexError(f"sample {i} is outside the {split} split (size {n})")
            shard = self.splits[split][s]
            yield b, shard, i - shard.start

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        if self.ckd_layers:
            # CKD reads its precomputed teacher relations (served as extras) instead of token states.
            spec = SignalSpec(logits=spec.logits, cls_layers=spec.cls_layers)
        idx = indices.cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
        located = list(self._locate(split, idx))
        out = TeacherSignals()
        if spec.logits:
            out.logits = torch.from_numpy(np.stack([sh.fields["logits"][r] for _, sh, r in located]))
        for layer in spec.cls_layers:
            key = f"cls.{layer}"
            out.cls[layer] = torch.from_numpy(np.stack([sh.fields[key][r] for _, sh, r in located]))
        ragged = [f"tokens.{layer}" for layer in spec.token_layers]
        if self.ckd_layers:
            ragged += ["ckd.band", "ckd.layer_gram"]
        if ragged:
            spans = [
                (sh, int(sh.fields["offsets"][r]), int(sh.fields["offsets"][r + 1])) for _, sh, r in located
            ]
            width = max(e - s for _, s, e in spans)
            mask = torch.zeros((len(spans), width), dtype=torch.long)
            for b, (_, s, e) in enumerate(spans):
                mask[b, : e - s] = 1
            for key in ragged:
                first = spans[0][0].fields[key]
                buf = np.zeros((len(spans), width, *first.shape[1:]), dtype=first.dtype)
                for b, (sh, s, e) in enumerate(spans):
                    buf[b, : e - s] = sh.fields[key][s:e]
                tensor = torch.from_numpy(buf)
                if key.startswith("tokens."):
                    out.tokens[int(key.split(".")[1])] = tensor
                else:
                    out.extras[key] = tensor
            out.token_mask = mask
        if self.ckd_layers:
            from kd_methods.ckd import relations_from_grams

            bands, gram = out.extras.pop("ckd.band"), out.extras.pop("ckd.layer_gram")
            rel = relations_from_grams(bands, gram, self.ckd_index, self.ckd_window)
            out.extras.update({f"ckd.{name}": value for name, value in rel.items()})
        return out

    def predictions(self, split: str) -> np.ndarray:
        """The teacher's logits for every sample of ``split``, in order."""
        return np.concatenate([sh.fields["logits"] for sh in self.splits[split]])

    @property
    def nbytes(self) -> int:
        return int(self.manifest["bytes"])


def fits_object_store(nbytes: int, share: float) -> bool:
    """True when ``nbytes`` fits ``share`` of the running Ray cluster's object store."""
    import ray

    if not ray.is_initialized():
        return False
    capacity = ray.cluster_resources().get("object_store_memory", 0)
    return nbytes <= share * capacity


def put_in_object_store(path: Path) -> Any:
    """Read a cache into memory once and put it in the Ray object store; trials ``ray.get`` it zero-copy."""
    import ray

    manifest, arrays = load_arrays(path, mmap=False)
    return ray.put({"manifest": manifest, "arrays": arrays})


def from_object_store(payload: dict[str, Any], ckd_layers: Sequence[int] | None = None) -> CachedTeacher:
    return CachedTeacher(payload["manifest"], payload["arrays"], ckd_layers)


# ---------------------------------------------------------------------------------------------------------------
# Used by a single trial (python -m orchestrator.trial --teacher-mode cached)


def ckd_layers_for(student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    from kd_methods import layer_map

    return (0, *layer_map(student_layers, teacher_layers))


def cached_teacher(cfg: Any, prepared: Any) -> tuple[CachedTeacher, ModelShape]:
    """Build (or find) the cache for one trial's own needs and open it."""
    from kd_methods import get_method
    from models.teacher import Teacher
    from orchestrator.stages import student_shape
    from orchestrator.trial import resolve_teacher

    teacher_dir = resolve_teacher(cfg.teacher)
    teacher = Teacher.load(teacher_dir, prepared.num_labels)
    shape = teacher.shape
    del teacher
    sshape = student_shape(cfg.student)
    method = get_method(cfg.method)(sshape, shape, **cfg.method_params)
    spec = method.signals()
    ckd = ()
    if cfg.method == "ckd":
        ckd = (ckd_layers_for(sshape.num_layers, shape.num_layers),)
        spec = SignalSpec(logits=spec.logits, cls_layers=spec.cls_layers)
    request = CacheRequest(
        teacher_dir,
        cfg.task,
        spec,
        cfg.max_length,
        ckd_layer_sets=ckd,
        ckd_window=int(cfg.method_params.get("window", 10)),
    )
    report = get_or_build(
        request,
        prepared.task_data,
        prepared.num_labels,
        Path(cfg.cache_dir),
        use_ray=False,
        device=cfg.train.device,
    )
    return CachedTeacher.open(report.path, ckd_layers=ckd[0] if ckd else None), shape


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


__all__ = [
    "BuildReport",
    "CacheCorruptError",
    "CacheRequest",
    "CachedTeacher",
    "ckd_layers_for",
    "fits_object_store",
    "from_object_store",
    "get_or_build",
    "human_bytes",
    "plan_bytes",
    "put_in_object_store",
    "teacher_passes",
    "verify",
]
