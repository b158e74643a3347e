"""A study's own tasks (docs/OWN_DATA.md): ``tasks:`` entries that are mappings declare classification tasks.

Before the study is validated, each mapping is checked (``tasks.declare``: one line naming the task and the field),
registered under its name, and moved to ``custom_tasks`` (with its data folder made absolute and its labels
resolved), so ``tasks`` holds names only and every stage treats a declared task like a built-in one. A top-level
``custom_tasks:`` list is read the same way (it is what a validated study dumps), so a study round-trips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def declare_custom_tasks(raw: Any, base_dir: str | Path | None) -> Any:
    """``raw`` (the study mapping) with declared tasks registered, in ``custom_tasks``, named in ``tasks``.

    ValueError (one line: the entry, the task, the field) for a bad declaration or a name declared twice."""
    from tasks import TaskDeclarationError, declare

    if not isinstance(raw, dict):
        return raw
    entries = raw.get("tasks")
    declared: list[dict[str, Any]] = []
    for i, decl in enumerate(raw.get("custom_tasks") or []):
        declared.append(_declare(declare, TaskDeclarationError, decl, base_dir, f"custom_tasks[{i}]"))
    if isinstance(entries, list):
        names: list[Any] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, dict):
                declared.append(_declare(declare, TaskDeclarationError, entry, base_dir, f"tasks[{i}]"))
                names.append(declared[-1]["name"])
            else:
                names.append(entry)
        raw = {**raw, "tasks": names}
    seen: set[str] = set()
    for d in declared:
        if d["name"] in seen:
            raise ValueError(f"task '{d['name']}' is declared twice")
        seen.add(d["name"])
    listed = raw.get("tasks") if isinstance(raw.get("tasks"), list) else None
    for i, d in enumerate(declared[: len(raw.get("custom_tasks") or [])]):
        if listed is not None and d["name"] not in listed:  # declared, never run: a forgotten tasks: entry
            raise ValueError(
                f"custom_tasks[{i}]: task '{d['name']}' is declared but not named in tasks: {listed}; "
                "add it there or remove the declaration"
            )
    if declared:
        raw = {**raw, "custom_tasks": declared}
    return raw


def _declare(
    declare: Any, error: type, entry: Any, base_dir: str | Path | None, where: str
) -> dict[str, Any]:
    try:
        task = declare(entry, base_dir)
    except error as err:
        raise ValueError(f"{where}: {err}") from None
    return {**task.declaration.model_dump(), "labels": list(task.label_values)}
