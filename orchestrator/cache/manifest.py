"""A cache manifest's shape, checked before anything reads it: every problem is a ``CacheCorruptError`` (the cache
is rebuilt and the reason shown), never a KeyError in the middle of a study. Shard paths and field names must stay
inside the cache folder: a manifest is data, and a path in it that escapes the folder makes it invalid."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.cache.key import CacheCorruptError

SPLITS = ("train", "validation", "test")
FIELD_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")  # logits, cls.3, tokens.6, ckd.band, offsets
TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "request": dict,
    "num_labels": int,
    "samples": dict,
    "shards": dict,
    "bytes": int,
}


def _bad(path: Path, what: str) -> CacheCorruptError:
    return CacheCorruptError(f"{path / 'manifest.json'} is invalid: {what}")


def _check_type(path: Path, where: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _bad(path, f"{where} should be {name}, got {type(value).__name__}")


def _inside(path: Path, rel: str, where: str) -> None:
    """``rel`` must be a relative path that stays inside the cache folder (no '..', no absolute path)."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or rel.startswith("~"):
        raise _bad(path, f"{where} '{rel}' points outside the cache folder")
    if "\x00" in rel:
        raise _bad(path, f"{where} {rel!r} is not a usable path (a NUL byte)")
    try:
        root = path.resolve()
        inside = (root / rel).resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError) as err:  # a link loop, a name the file system refuses
        raise _bad(path, f"{where} {rel!r} is not a usable path ({err})") from None
    if not inside:
        raise _bad(path, f"{where} '{rel}' points outside the cache folder (through a link)")


def _check_shard(path: Path, split: str, i: int, shard: Any) -> None:
    where = f"shards.{split}[{i}]"
    _check_type(path, where, shard, dict)
    for key, kind in (("dir", str), ("start", int), ("end", int), ("files", dict)):
        if key not in shard:
            raise _bad(path, f"{where} lacks '{key}'")
        _check_type(path, f"{where}.{key}", shard[key], kind)
    _inside(path, shard["dir"], f"{where}.dir")
    if not 0 <= shard["start"] < shard["end"]:
        raise _bad(path, f"{where} has an empty or negative range {shard['start']}..{shard['end']}")
    for name, info in shard["files"].items():
        if not FIELD_RE.match(name):
            raise _bad(path, f"{where}.files has a bad field name '{name}'")
        _inside(path, f"{shard['dir']}/{name}.npy", f"{where}.files.{name}")
        _check_type(path, f"{where}.files.{name}", info, dict)
        for key, kind in (("sha256", str), ("bytes", int)):
            if key not in info:
                raise _bad(path, f"{where}.files.{name} lacks '{key}'")
            _check_type(path, f"{where}.files.{name}.{key}", info[key], kind)


# What each kind of cache must hold: its top-level keys and the splits it has shards for. A classification cache
# (no ``kind``) stores every split with the class count; the LM cache (``kind: lm``, ``orchestrator/cache/lm_cache.py``)
# stores the train blocks only, and its output head in a file of its own.
LM_TOP_LEVEL = {k: v for k, v in TOP_LEVEL.items() if k != "num_labels"}
KINDS: dict[str | None, tuple[dict[str, type | tuple[type, ...]], tuple[str, ...]]] = {
    None: (TOP_LEVEL, SPLITS),
    "lm": (LM_TOP_LEVEL, ("train",)),
}


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Return ``manifest`` if it is well formed for the cache folder ``path``; else raise CacheCorruptError."""
    _check_type(path, "the manifest", manifest, dict)
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise _bad(path, f"unknown cache kind {kind!r}; valid: {[k for k in KINDS if k]} or none")
    top_level, splits = KINDS[kind]
    for key, type_ in top_level.items():
        if key not in manifest:
            raise _bad(path, f"key '{key}' is missing")
        _check_type(path, key, manifest[key], type_)
    if kind is None and "spec" not in manifest["request"]:
        raise _bad(path, "request.spec is missing")
    for split in splits:
        if split not in manifest["shards"]:
            raise _bad(path, f"shards.{split} is missing")
        _check_type(path, f"shards.{split}", manifest["shards"][split], list)
        _check_type(path, f"samples.{split}", manifest["samples"].get(split), int)
        for i, shard in enumerate(manifest["shards"][split]):
            _check_shard(path, split, i, shard)
    head = manifest.get("head")
    if head:
        _check_type(path, "head", head, dict)
        _check_type(path, "head.file", head.get("file"), str)
        _inside(path, head["file"], "head.file")
    return manifest
