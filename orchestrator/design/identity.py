"""What a study trains on, identified by content: a changed data file means new trial keys, never stale results.

The fingerprint hashes the bytes of every split file of the study's tasks (``<data>/<task>/<split>.jsonl``), so
it does not depend on the folder's path, on a manifest only ``build_local`` writes, or on modification times.
Hashes are remembered per (file, size, mtime) within a process, so planning twice reads the files once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.design.spec import StudySpec

SPLITS = ("train", "validation", "test")
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if stamp not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[stamp] = h.hexdigest()
    return _HASHES[stamp]


def data_content(data: str, tasks: list[str]) -> dict[str, str]:
    """``{"<task>/<split>": sha256}`` of the study's data files; ``{"source": "hub"}`` for hub data, and the folder
    name when it does not exist yet (the default data is built on first use, before the study plans its keys)."""
    if data == "hub":
        return {"source": "hub"}
    root = Path(data)
    if not root.is_dir():
        return {"source": str(data), "missing": "true"}
    out = {}
    for task in sorted(tasks):
        for split in SPLITS:
            f = root / task / f"{split}.jsonl"
            out[f"{task}/{split}"] = file_sha256(f) if f.is_file() else "missing"
    return out


def data_key(spec: StudySpec) -> str:
    """Identifies the data a study trains on by content (see the module docstring): edited data means new trial keys. A
    declared task (docs/OWN_DATA.md) adds its declaration (without its folder's path) and its files' hashes."""
    from orchestrator.core.paths import stable_key
    from tasks import is_custom
    from tasks.custom import split_path

    builtin = [t for t in spec.tasks if not is_custom(t)]
    payload: dict[str, Any] = {"data": data_content(spec.data, builtin), "max_samples": spec.max_samples}
    if spec.custom_tasks:
        payload["custom_tasks"] = [
            {
                **{k: v for k, v in d.items() if k != "data"},
                "files": {
                    s: file_sha256(split_path(Path(d["data"]), s)) for s in ("train", "validation", "test")
                },
            }
            for d in spec.custom_tasks
        ]
    return stable_key(payload)


def trial_data(spec: StudySpec) -> str:
    """What trials receive as ``data``: ``hub`` or an absolute folder. Tune runs each trial in its own working
    folder, where a relative ``data/local`` would name another (freshly built) data set than the one the teachers
    were fine-tuned and cached on: hence absolute."""
    return "hub" if spec.data == "hub" else str(Path(spec.data).resolve())
