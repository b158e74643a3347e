"""The task registry: the built-in tasks and the ones declared in YAML (tasks/custom.py), by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.base import Task
from tasks.clone import CloneTask
from tasks.custom import (
    BUILTIN_NAMES,
    CustomTask,
    TaskDeclaration,
    TaskDeclarationError,
    env_entries,
    export,
    validate,
)
from tasks.defect import DefectTask
from tasks.exception import ExceptionTask

BUILTIN_TASKS: dict[str, Task] = {"defect": DefectTask(), "clone": CloneTask(), "exception": ExceptionTask()}
assert tuple(sorted(BUILTIN_TASKS)) == BUILTIN_NAMES
# The built-in tasks plus the declared ones (``declare``; in a worker, ``KDSTUDY_TASKS`` on first use).
TASKS: dict[str, Task] = dict(BUILTIN_TASKS)


def get_task(name: str) -> Task:
    """The registered task called ``name`` (built-in, or declared in this process or in ``KDSTUDY_TASKS``);
    KeyError listing the valid names otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        pass
    for entry in env_entries() if isinstance(name, str) else []:
        if entry["name"] == name:
            TASKS[name] = CustomTask(TaskDeclaration.model_validate(entry), list(entry["labels"]))
            return TASKS[name]
    raise KeyError(f"unknown task {name!r}; valid: {sorted(TASKS)}") from None


def registered() -> dict[str, Task]:
    """Every task: built-in, declared here, and declared in ``KDSTUDY_TASKS`` (registered on the way), so a
    worker sees the same tasks as the study's driver (a tokenizer family's members, for one)."""
    for entry in env_entries():
        get_task(entry["name"])
    return TASKS


def family_members(family: str) -> list[str]:
    """The registered tasks (built-in and declared) of one student tokenizer family, sorted: what that family's
    tokenizer is trained on (``c_java``: clone and defect; ``python``: exception)."""
    return sorted(name for name, t in registered().items() if t.family == family)


def is_custom(name: str) -> bool:
    """Whether ``name`` is a task declared in YAML (its data lives in its own folder, not under ``data``)."""
    return name not in BUILTIN_TASKS


def declare(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> CustomTask:
    """Validate a declaration (relative ``data`` against ``base_dir``), register its task (replacing one of the
    same name) and export it to worker processes. TaskDeclarationError, one line, when it does not validate."""
    decl, labels = validate(raw, base_dir)
    task = CustomTask(decl, labels)
    TASKS[decl.name] = task
    export(decl, labels)
    return task


def load_task_file(path: str | Path) -> CustomTask:
    """``--task-file``: a YAML file holding one declaration (the mapping a study's ``tasks:`` entry takes)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TaskDeclarationError(f"--task-file {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TaskDeclarationError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TaskDeclarationError(f"{path}: a task file holds one mapping (name, data, code_field, ...)")
    try:
        return declare(raw, path.parent)
    except TaskDeclarationError as err:
        raise TaskDeclarationError(f"{path}: {err}") from None
