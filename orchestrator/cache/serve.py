"""Serving a cache to trials: verified, memory-mapped shards or the Ray object store, row-exact per batch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kd_methods import DERIVED_SIGNALS, DerivedRequest, SignalSpec, TeacherSignals
from orchestrator.cache import gather
from orchestrator.cache.key import CacheCorruptError, derived_from_manifest, sha256_file


def _manifest(path: Path) -> dict[str, Any]:
    mf = path / "manifest.json"
    if not mf.exists():
        raise CacheCorruptError(f"{mf} is missing")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CacheCorruptError(f"{mf} is unreadable: {err}") from err
    from orchestrator.cache.manifest import check_manifest

    return check_manifest(manifest, path)


_VERIFIED: set[tuple[str, int, int]] = set()
# Written into a cache folder by the stage that found it whole (checksums) or built it, in each study run: a trial
# process serving the cache then checks the file sizes only, instead of hashing the whole cache again (every new
# trial process did, CKD's signals included, on shared storage). The next study run's stage hashes it again.
VERIFIED_FILE = "verified.json"


def _stamp(path: Path, manifest: dict[str, Any]) -> tuple[str, int, int]:
    return (str(path.resolve()), (path / "manifest.json").stat().st_mtime_ns, manifest["bytes"])


def record_verified(path: Path) -> None:
    """Say that the cache at ``path`` was checked (or built) whole just now (``verify(trust_record=True)``)."""
    import os
    import uuid

    _, mtime, nbytes = _stamp(path, _manifest(path))
    tmp = path / f".{VERIFIED_FILE}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps({"manifest_mtime_ns": mtime, "bytes": nbytes}))
        os.replace(tmp, path / VERIFIED_FILE)  # atomic: a reader sees the old record or the new one
    except OSError:  # a cache we may only read: its trials hash it, as before
        tmp.unlink(missing_ok=True)


def _recorded(path: Path, stamp: tuple[str, int, int]) -> bool:
    try:
        record = json.loads((path / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return False
    return [record.get("manifest_mtime_ns"), record.get("bytes")] == [stamp[1], stamp[2]]


def verify(path: Path, force: bool = False, trust_record: bool = False) -> dict[str, Any]:
    """Check every shard file against its sha256; raises CacheCorruptError naming the first bad file.

    Hashing a large cache takes a while, so a process verifies each cache once (sizes are checked every time);
    ``trust_record`` (a trial serving the cache): not at all when this study run's cache stage recorded it whole
    (``record_verified``)."""
    manifest = _manifest(path)
    stamp = _stamp(path, manifest)
    full = force or (stamp not in _VERIFIED and not (trust_record and _recorded(path, stamp)))
    for split_shards in manifest["shards"].values():
        for shard in split_shards:
            for name, info in shard["files"].items():
                f = path / shard["dir"] / f"{name}.npy"
                if not f.exists():
                    raise CacheCorruptError(f"shard file {f} is missing")
                if f.stat().st_size != info["bytes"] or (full and sha256_file(f) != info["sha256"]):
                    raise CacheCorruptError(f"shard file {f} does not match its checksum")
    if full:  # hashed here (a record trusted is not)
        _VERIFIED.add(stamp)
    return manifest


def load_arrays(
    path: Path, mmap: bool = True, check: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and every shard array, memory-mapped (or read into memory to put in the object store)."""
    manifest = verify(path, trust_record=True) if check else _manifest(path)
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


def move_signals(
    signals: TeacherSignals, device: torch.device | str, non_blocking: bool = False
) -> TeacherSignals:
    """``signals`` on ``device``, dtypes kept (a no-op for tensors already there)."""
    return signals.map(lambda t: t.to(device, non_blocking=non_blocking))


class CachedTeacher:
    """A ``TeacherSource`` reading the cache: the signals of exactly the requested samples, in request order."""

    def __init__(
        self, manifest: dict[str, Any], arrays: dict[str, np.ndarray], reads: DerivedRequest | None = None
    ):
        """``reads``: the derived signal the reading method asks for (``KDMethod.cache_needs``), over its own
        teacher layers; the cache must hold it over a superset of them."""
        self.manifest = manifest
        self.reads = reads
        self.positions: list[int] = []
        if reads is not None:
            held = derived_from_manifest(manifest["request"]).get(reads.kind)
            if held is None or held.params != reads.params or not set(reads.layers) <= set(held.layers):
                what = f"{held.layers} with {dict(held.params)}" if held else "none"
                raise KeyError(
                    f"cache {manifest['key']} holds derived signal '{reads.kind}' for teacher layers {what}, "
                    f"not for {reads.layers} with {dict(reads.params)}"
                )
            self.stored = held
            self.positions = [held.layers.index(layer) for layer in reads.layer_sets[0]]
        self.splits: dict[str, list[_Shard]] = {}
        for split, shards in manifest["shards"].items():
            self.splits[split] = []
            for sh in sorted(shards, key=lambda s: s["start"]):
                fields = {name: arrays[f"{sh['dir']}/{name}.npy"] for name in sh["files"]}
                self.splits[split].append(_Shard(sh["start"], sh["end"], fields))
        self._starts = {s: np.array([sh.start for sh in v]) for s, v in self.splits.items()}

    @classmethod
    def open(cls, path: str | Path, reads: DerivedRequest | None = None, mmap: bool = True) -> CachedTeacher:
        manifest, arrays = load_arrays(Path(path), mmap=mmap)
        return cls(manifest, arrays, reads)

    def check_data(self, fingerprint: str) -> None:
        """Raise unless the cache was built from the data whose ``TaskData.fingerprint()`` is ``fingerprint``.

        Signals are served by sample index, so a trial on other data (another build of the local data, another
        ``max_samples``) would silently learn from the wrong teacher outputs. Caches made before the fingerprint
        was recorded are checked by their sample counts only (in ``_locate``)."""
        built_from = self.manifest.get("data_fingerprint")
        if built_from is not None and built_from != fingerprint:
            raise ValueError(
                f"teacher cache {self.manifest['key']} was built from other data (fingerprint {built_from[:12]}) "
                f"than this trial's (fingerprint {fingerprint[:12]}): teacher signals would not match the samples; "
                "give every trial the same data folder (an absolute path) and max_samples as the cache"
            )

    def fetch(self, split: str, indices: Tensor | np.ndarray, spec: SignalSpec) -> TeacherSignals:
        """The host side of ``signals``: the stored rows of ``indices`` as CPU tensors in their stored dtype
        (a derived signal: its stored fields over the cache's layer union, as extras). Vectorised gathers, no
        Python per sample; safe to run on a reader thread while the training step runs."""
        if self.reads:
            # A method reading derived numbers reads them in place of the token states (CKD: its relations).
            spec = SignalSpec(logits=spec.logits, cls_layers=spec.cls_layers)
        idx = indices.cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
        shards = self.splits[split]
        shard_ids, rows = gather.locate(self._starts[split], idx, self.manifest["samples"][split], split)
        out = TeacherSignals()
        if spec.logits:
            out.logits = torch.from_numpy(gather.gather_rows(shards, "logits", shard_ids, rows))
        for layer in spec.cls_layers:
            out.cls[layer] = torch.from_numpy(gather.gather_rows(shards, f"cls.{layer}", shard_ids, rows))
        ragged = [f"tokens.{layer}" for layer in spec.token_layers]
        if self.reads:
            ragged += list(DERIVED_SIGNALS[self.reads.kind].fields)
        if ragged:
            begin, length = gather.ragged_spans(shards, shard_ids, rows)
            out.token_mask = torch.from_numpy(gather.token_mask(length))
            for key in ragged:
                tensor = torch.from_numpy(gather.gather_ragged(shards, key, shard_ids, begin, length))
                if key.startswith("tokens."):
                    out.tokens[int(key.split(".")[1])] = tensor
                else:
                    out.extras[key] = tensor
        return out

    def finish(self, fetched: TeacherSignals, device: torch.device | str = "cpu") -> TeacherSignals:
        """The device side of ``signals``: ``fetched`` (from ``fetch``, possibly already copied to ``device``) on
        ``device`` in its stored dtype, with what derives from the stored numbers computed there (CKD's relations,
        float32, vectorised over the batch, on the device the student trains on)."""
        out = move_signals(fetched, device)
        if self.reads:
            kind = DERIVED_SIGNALS[self.reads.kind]
            stored = {name: out.extras.pop(name) for name in kind.fields}
            out.extras.update(kind.serve(stored, self.positions, self.stored))
        return out

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals:
        """The signals of exactly ``indices``, in their order, on the CPU in the stored dtype (``fetch`` +
        ``finish``)."""
        return self.finish(self.fetch(split, indices, spec))

    def predictions(self, split: str) -> np.ndarray:
        """The teacher's logits for every sample of ``split``, in order."""
        return np.concatenate([sh.fields["logits"] for sh in self.splits[split]])

    @property
    def nbytes(self) -> int:
        return int(self.manifest["bytes"])


def fits_object_store(nbytes: int, share: float, held: int = 0) -> bool:
    """True when ``nbytes``, with the ``held`` bytes of caches already put, fits ``share`` of the smallest live
    node's object store. Not the cluster's total: the driver's node holds every cache put, and each trial's node
    pulls a whole one into its own store, so a cache that fits the sum of eight stores may fit none of them."""
    import ray

    if not ray.is_initialized():
        return False
    stores = [n["Resources"].get("object_store_memory", 0) for n in ray.nodes() if n.get("Alive")]
    return held + nbytes <= share * min(stores, default=0)


def put_in_object_store(path: Path) -> Any:
    """Read a cache into memory once and put it in the Ray object store; trials ``ray.get`` it zero-copy."""
    import ray

    manifest, arrays = load_arrays(path, mmap=False)
    return ray.put({"manifest": manifest, "arrays": arrays})


def from_object_store(payload: dict[str, Any], reads: DerivedRequest | None = None) -> CachedTeacher:
    return CachedTeacher(payload["manifest"], payload["arrays"], reads)
