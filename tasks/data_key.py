"""What a data request would return, named without loading it: the key things derived from task data (a student
tokenizer, a trial's prepared data) can be found under before the data are read.

``load_task_data(task, source, data_seed, max_samples)`` is a pure function of its files: the JSON Lines of a data
folder (named by path, size and modification time here; clone's official layout: its ``data.jsonl`` and ``*.txt``
plus the data seed that samples them) or the cached copy of a hub dataset (named by its revision,
tasks/hub_cache.py) plus the data seed that samples it. ``data_request_key`` is that identity as a
string; it changes when the files or the seed do, and costs a few ``stat`` calls, where loading clone detection's
hub splits costs minutes and gigabytes. Content fingerprints (``TaskData.fingerprint``) stay the ground truth:
a key only tells a cache where to look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tasks.custom import split_path
from tasks.examples import SPLITS
from tasks.hub_cache import dataset_revision
from tasks.registry import get_task, is_custom


def _file_stats(paths: Sequence[Path | None]) -> list[object]:
    out: list[object] = []
    for path in paths:
        if path is None or not path.is_file():
            out.append(None)
            continue
        st = path.stat()
        out.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return out


def data_request_key(
    task: str, source: str | Path, data_seed: int = 0, max_samples: int | None = None
) -> str:
    """The identity of ``load_task_data(task, source, data_seed, max_samples)`` (``source``: ``"hub"`` or a
    resolved data folder), as canonical JSON."""
    t = get_task(task)
    identity: dict[str, object] = {"task": task, "max_samples": max_samples}
    if is_custom(task):
        folder = Path(t.data_dir)  # type: ignore[attr-defined]
        identity["files"] = _file_stats([split_path(folder, s) for s in SPLITS])
        # what of the files a declaration reads, and how its labels map to classes: same files, other data
        identity["fields"] = [t.code_field, t.code2_field, t.label_field]  # type: ignore[attr-defined]
        identity["labels"] = list(t.label_values)  # type: ignore[attr-defined]
    elif str(source) == "hub":
        identity.update(
            hub=t.hf_id,
            config=t.hf_config,
            revision=dataset_revision(t.hf_id, t.hf_config),
            data_seed=int(data_seed),
        )
    else:
        folder = Path(source) / t.name
        # every file the loader reads (the split files; clone's official layout: data.jsonl first, then *.txt)
        identity["files"] = _file_stats(list(t.data_files(folder).values()))
        if t.official_layout(folder):  # sampled with the data seed (clone's 10%), as the hub copy
            identity["data_seed"] = int(data_seed)
    return json.dumps(identity, sort_keys=True)


def family_request_key(
    members: Sequence[str], source: str | Path, data_seed: int = 0, max_samples: int | None = None
) -> str:
    """sha256 of the member tasks' request keys, in order: what a family tokenizer is trained on."""
    keys = [data_request_key(m, source, data_seed, max_samples) for m in members]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()
