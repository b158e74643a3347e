"""What a study trains on, identified by content: a changed data file means new trial keys, never stale results.

The fingerprint hashes the bytes of every file the loaders read for the study's tasks (``Task.data_files``: split
files, ``validation.jsonl`` before ``valid.jsonl``/``dev.jsonl``; clone's official ``data.jsonl`` + ``*.txt`` with
the seed sampling them): it depends on neither the folder's path, a ``build_local`` manifest nor modification times.
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


def hub_revision(task: str) -> str:
    """Which copy of a task's hub dataset the cache holds: the downloaded snapshot's commit first (stable: the
    Arrow copy a first offline load prepares beside it must not change a study's keys), else the prepared copy's
    hash, ``none`` when neither is there (offline the run then stops on the missing asset before any trial; online
    it fetches the snapshot first, design/hub_check.py). The same rule as the data requests' keys
    (``tasks.hub_cache.dataset_revision``), so a study's keys and its tokenizer pins agree."""
    from tasks import get_task
    from tasks.hub_cache import dataset_revision

    t = get_task(task)
    return dataset_revision(t.hf_id, t.hf_config)


def data_content(data: str, tasks: list[str], data_seed: int = 0) -> dict[str, str]:
    """``{"<task>/<split>": sha256}`` of the study's data files, and the folder name when it does not exist yet (the
    default data is built on first use, before the study plans its keys). Hub data: the source, the study's data
    seed (clone's 10% sample) and each task's dataset revision; a local folder's content has no seed in it (its
    files are the data; only clone's official layout, sampled with it, adds it), so a local study's keys stay."""
    if data == "hub":
        return {
            "source": "hub",
            "data_seed": str(data_seed),
            **{f"{task}/revision": hub_revision(task) for task in sorted(tasks)},
        }
    from tasks import get_task

    root = Path(data)
    if not root.is_dir():
        return {"source": str(data), "missing": "true"}
    out = {}
    for task in sorted(tasks):
        t = get_task(task)  # a folder with validation.jsonl (read first) hashes what it always did
        for role, f in t.data_files(root / task).items():
            out[f"{task}/{role}"] = file_sha256(f) if f is not None else "missing"
        if t.official_layout(root / task):
            out[f"{task}/data_seed"] = str(data_seed)
    return out


def data_key(spec: StudySpec) -> str:
    """Identifies the data a study trains on by content (see the module docstring): edited data means new trial keys. A
    declared task (docs/OWN_DATA.md) adds its declaration (without its folder's path) and its files' hashes."""
    from orchestrator.core.paths import stable_key
    from tasks import is_custom
    from tasks.custom import split_path
    from tasks.labels import unlabelled_path

    builtin = [t for t in spec.tasks if not is_custom(t)]
    payload: dict[str, Any] = {
        "data": data_content(spec.data, builtin, spec.data_seed or 0),
        "max_samples": spec.max_samples,
    }
    if spec.custom_tasks:
        payload["custom_tasks"] = [
            {
                **{k: v for k, v in d.items() if k != "data"},
                "files": {s: file_sha256(split_path(Path(d["data"]), s)) for s in SPLITS},
                # its unlabelled inputs (KD trains on them; tasks/labels.py), only when it has some: keys
                # without them are unchanged
                **({"unlabelled": file_sha256(u)} if (u := unlabelled_path(d["data"])) else {}),
            }
            for d in spec.custom_tasks
        ]
    return stable_key(payload)


def trial_data(spec: StudySpec) -> str:
    """What trials receive as ``data``: ``hub`` or an absolute folder. Tune runs each trial in its own working
    folder, where a relative ``data/local`` would name another (freshly built) data set than the one the teachers
    were fine-tuned and cached on: hence absolute."""
    return "hub" if spec.data == "hub" else str(Path(spec.data).resolve())
