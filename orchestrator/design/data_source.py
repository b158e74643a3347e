"""The data a study trains on, resolved the same way by the run, ``--plan`` and ``--status`` (so trial keys agree).

The default data of each kind is built on first use under the study's storage, never in the current folder:

* classification: ``data: data/local`` names ``./data/local`` when that exists, else ``<storage>/data/local``
  (the local real-code data, ``tasks.build_local``). A study whose tasks are all declared in YAML
  (docs/OWN_DATA.md) reads only their own folders and builds nothing.
* completion: ``data: data/local/completion`` names ``./data/local/completion`` when that exists, else
  ``<storage>/data/local/completion`` (the offline proxy, ``tasks.build_local --tasks completion``).

Both live side by side in ``<storage>/data/local``; each kind builds only what its own files lack.

* ``data: data/local-window`` (classification) is the local data with every exception function cut to its first
  line plus the lines around the masked handler (``tasks/hole_window.py`` says why: at 128 tokens
  the ``__HOLE__`` is out of view in half of the whole functions); defect and clone are copied unchanged. It names
  ``./data/local-window`` when that exists, else ``<storage>/data/local-window``, built on first use from the
  default data (itself built first when missing), with the knowledge-transfer check's window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core.log import log

DEFAULT_DATA = {"classification": "data/local", "completion": "data/local/completion"}
WINDOW_DATA = "data/local-window"


def _built_here(spec: Any) -> list[str]:
    """The data names this kind builds on first use: its default, and for classification the windowed copy."""
    return [DEFAULT_DATA[spec.kind]] + ([WINDOW_DATA] if spec.kind == "classification" else [])


def storage_data(spec: Any, name: str | None = None) -> Path:
    """Where the kind's default data (or ``name``, one of the names it builds) lives under the study's storage."""
    return Path(spec.storage).resolve() / (name or DEFAULT_DATA[spec.kind])


def resolve_spec_data(spec: Any) -> Any:
    """``spec`` with ``data`` pointing at the storage's copy when a data set built on first use is absent from the
    current folder."""
    if spec.data in _built_here(spec) and not Path(spec.data).exists() and not _all_custom(spec):
        return spec.model_copy(update={"data": str(storage_data(spec, spec.data))})
    return spec


def _missing(spec: Any, folder: Path) -> list[str]:
    """What the kind's default data lacks in ``folder``: classification tasks, or ``completion``."""
    if spec.kind == "completion":
        return [] if (folder / "train.txt").is_file() else ["completion"]
    from tasks import BUILTIN_TASKS

    return [t for t in sorted(BUILTIN_TASKS) if not (folder / t / "train.jsonl").is_file()]


def will_build(spec: Any) -> bool:
    """True when ``spec.data`` is data the storage builds (the default, the windowed copy) and some of it is still
    to be built."""
    path = Path(spec.data)
    if path.resolve() == storage_data(spec, WINDOW_DATA):  # also when it was cut with another window
        return bool(_missing(spec, path)) or _window_record(path) != _window()
    return path.resolve() == storage_data(spec) and bool(_missing(spec, path))


def prepare_data(spec: Any) -> None:
    """Build the default data under the storage when it is what the study reads and some is missing (the study's
    own tasks, and for a classification study every built-in task: a family's tokenizer reads all its tasks)."""
    if not will_build(spec):
        return
    from tasks.build_local import build_local

    path, missing = Path(spec.data), _missing(spec, Path(spec.data))
    if path.resolve() == storage_data(spec, WINDOW_DATA):
        _build_window(spec, path)
        return
    if spec.kind == "completion":
        log(
            f"building the offline completion proxy into {path} (python -m tasks.build_local --tasks completion)"
        )
        build_local(path.parent, tasks=["completion"])
    else:
        log(f"building local real-code data under {path} (python -m tasks.build_local): {', '.join(missing)}")
        build_local(path, tasks=missing)


def _build_window(spec: Any, path: Path) -> None:
    """The windowed copy of the default data (``./data/local`` when present, else the storage's, built first)."""
    import os
    import shutil

    from tasks.hole_window import hole_window_data

    source = Path(DEFAULT_DATA["classification"])
    if not source.exists():
        source = storage_data(spec)
        prepare_data(spec.model_copy(update={"data": str(source)}))
    window = _window()
    log(
        f"cutting exception functions to {window[0]} lines above and {window[1]} below the hole: "
        f"{source} -> {path}"
    )
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # a build cut short leaves no half folder behind
    shutil.rmtree(tmp, ignore_errors=True)
    hole_window_data(source, tmp, *window)
    for task in _missing(spec, tmp):  # defect and clone, unchanged
        shutil.copytree(source / task, tmp / task)
    (tmp / "window.json").write_text(json.dumps({"source": str(source.resolve()), "window": list(window)}))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _window() -> tuple[int, int]:
    """The knowledge-transfer check's window (its ``cpu`` size): the hole in view for over 90% at 128 tokens."""
    from tasks.hole_window import CHECK_WINDOW

    return CHECK_WINDOW


def _window_record(path: Path) -> tuple[int, int] | None:
    """The window ``path`` was cut with (its ``window.json``), None when it has none."""
    try:
        before, after = json.loads((path / "window.json").read_text())["window"]
        return int(before), int(after)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _all_custom(spec: Any) -> bool:
    if spec.kind != "classification":
        return False
    from tasks import is_custom

    return all(is_custom(t) for t in spec.tasks)
