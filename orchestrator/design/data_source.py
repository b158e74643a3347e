"""The data a study trains on, resolved the same way by the run, ``--plan`` and ``--status`` (so trial keys agree).

The default data of each kind is built on first use under the study's storage, never in the current folder:

* classification: ``data: data/local`` names ``./data/local`` when that exists, else ``<storage>/data/local``
  (the local real-code data, ``tasks.build_local``). A study whose tasks are all declared in YAML
  (docs/OWN_DATA.md) reads only their own folders and builds nothing.
* completion: ``data: data/local/completion`` names ``./data/local/completion`` when that exists, else
  ``<storage>/data/local/completion`` (the offline proxy, ``tasks.build_local --tasks completion``).

Both live side by side in ``<storage>/data/local``; each kind builds only what its own files lack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.core.log import log

DEFAULT_DATA = {"classification": "data/local", "completion": "data/local/completion"}


def storage_data(spec: Any) -> Path:
    """Where the kind's default data lives under the study's storage."""
    return Path(spec.storage).resolve() / DEFAULT_DATA[spec.kind]


def resolve_spec_data(spec: Any) -> Any:
    """``spec`` with ``data`` pointing at the storage's copy when the default is absent from the current folder."""
    default = DEFAULT_DATA[spec.kind]
    if spec.data == default and not Path(default).exists() and not _all_custom(spec):
        return spec.model_copy(update={"data": str(storage_data(spec))})
    return spec


def _missing(spec: Any, folder: Path) -> list[str]:
    """What the kind's default data lacks in ``folder``: classification tasks, or ``completion``."""
    if spec.kind == "completion":
        return [] if (folder / "train.txt").is_file() else ["completion"]
    from tasks import BUILTIN_TASKS

    return [t for t in sorted(BUILTIN_TASKS) if not (folder / t / "train.jsonl").is_file()]


def will_build(spec: Any) -> bool:
    """True when ``spec.data`` is the storage's default data and some of it is still to be built."""
    path = Path(spec.data)
    return path.resolve() == storage_data(spec) and bool(_missing(spec, path))


def prepare_data(spec: Any) -> None:
    """Build the default data under the storage when it is what the study reads and some is missing (the study's
    own tasks, and for a classification study every built-in task: a family's tokenizer reads all its tasks)."""
    if not will_build(spec):
        return
    from tasks.build_local import build_local

    path, missing = Path(spec.data), _missing(spec, Path(spec.data))
    if spec.kind == "completion":
        log(
            f"building the offline completion proxy into {path} (python -m tasks.build_local --tasks completion)"
        )
        build_local(path.parent, tasks=["completion"])
    else:
        log(f"building local real-code data under {path} (python -m tasks.build_local): {', '.join(missing)}")
        build_local(path, tasks=missing)


def _all_custom(spec: Any) -> bool:
    if spec.kind != "classification":
        return False
    from tasks import is_custom

    return all(is_custom(t) for t in spec.tasks)
