"""Which storages each study ran with (``studies.json`` under ``KDSTUDY_STATE_DIR``, default
``~/.local/state/kdstudy``), so ``--status``, ``--plan`` and the notebooks command find a study's store without
``--storage``. Written by the study driver (sweep/), read by it and by analysis/; imports nothing of either.

The index is keyed by storage (``{storage: {study: last run, epoch seconds}}``): two storages (or two users sharing a
state folder) with a study named ``smoke`` each keep theirs. A name found in several storages is never guessed:
the storage the study's own file names wins, else the lookup says which storages hold it (``SeveralStorages``)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

STATE_ENV = "KDSTUDY_STATE_DIR"


class SeveralStorages(LookupError):
    """The study ran in more than one storage; the message names them and asks for ``--storage``."""


def state_dir() -> Path:
    default = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "kdstudy"
    return Path(os.environ.get(STATE_ENV) or default)


def _read() -> dict[str, dict[str, float]]:
    """The index; malformed content (not JSON, not a mapping, an entry whose times are not numbers) counts as
    empty (that entry alone, when the rest is readable), with a one-line warning naming the file: the commands
    then need ``--storage``, and the next run rewrites it."""
    path = state_dir() / "studies.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return _unreadable(path, str(err))
    if not isinstance(raw, dict):
        return _unreadable(path, f"expected a JSON object, got {type(raw).__name__}")
    index: dict[str, dict[str, float]] = {}
    for key, value in raw.items():
        if isinstance(value, str):  # the earlier layout, {study: storage}
            index.setdefault(value, {})[key] = 0.0
            continue
        elif isinstance(value, dict) and all(_is_time(t) for t in value.values()):
            index.setdefault(key, {}).update({s: float(t) for s, t in value.items()})
        else:  # one malformed entry: the others still serve
            _unreadable(path, f"entry {key!r} is not {{study: last run time}}")
    return index


def _is_time(t: object) -> bool:
    return isinstance(t, (int, float)) and not isinstance(t, bool)


_WARNED: set[str] = set()


def _unreadable(path: Path, why: str) -> dict[str, dict[str, float]]:
    """Empty, after a one-line warning naming the file (once per process and problem)."""
    if why not in _WARNED:
        _WARNED.add(why)
        print(f"warning: {path}: ignored ({why}); pass --storage DIR", file=sys.stderr)
    return {}


def remember_storage(study: str, storage: str | Path) -> None:
    """Record that ``study`` keeps its files in ``storage``, for the notebooks command and ``--status`` without
    ``--storage``."""
    path = state_dir() / "studies.json"
    index = _read()
    index.setdefault(str(Path(storage).resolve()), {})[study] = time.time()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the commands then need --storage, and say so


def remembered_storages(study: str) -> list[Path]:
    """The storages (that still exist) ``study`` ran in, the latest first."""
    found = [(t[study], Path(s)) for s, t in _read().items() if study in t and Path(s).is_dir()]
    return [s for _, s in sorted(found, key=lambda x: -x[0])]


def remembered_storage(study: str, own: str | Path | None = None) -> Path | None:
    """The storage ``study`` ran in: ``own`` (the storage its study file names) when it is one of them, else the
    only one; SeveralStorages when there are several to choose from."""
    found = remembered_storages(study)
    if own is not None and Path(own).resolve() in found:
        return Path(own).resolve()
    if len(found) > 1:
        raise SeveralStorages(
            f"study '{study}' ran in {len(found)} storages ({', '.join(map(str, found))}); pass --storage DIR"
        )
    return found[0] if found else None
