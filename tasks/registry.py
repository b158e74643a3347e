"""The task registry: the built-in tasks and the ones declared in YAML (tasks/custom.py), by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.base import Task
from tasks.clone import CloneTask
from tasks.custom import (
    BUILTIN_FAMILIES,
    BUILTIN_NAMES,
    CustomTask,
    TaskDeclarationError,
    validate,
)
from tasks.defect import DefectTask
from tasks.exception import ExceptionTask

BUILTIN_TASKS: dict[str, Task] = {"defect": DefectTask(), "clone": CloneTask(), "exception": ExceptionTask()}
assert tuple(sorted(BUILTIN_TASKS)) == BUILTIN_NAMES
assert tuple(sorted({t.family for t in BUILTIN_TASKS.values()})) == BUILTIN_FAMILIES
# The built-in tasks plus the ones declared in this process (``declare``; in a worker, from its trial's config).
TASKS: dict[str, Task] = dict(BUILTIN_TASKS)


def get_task(name: str) -> Task:
    """The registered task called ``name`` (built-in, or declared in this process); KeyError listing the valid
    names otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        pass
    raise KeyError(f"unknown task {name!r}; valid: {sorted(TASKS)}") from None


def registered() -> dict[str, Task]:
    """Every task: built-in and declared in this process (a worker registers its study's declarations from its
    trial config first, so it sees the same tasks as the driver: a tokenizer family's members, for one)."""
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
    same name) in this process. TaskDeclarationError, one line, when it does not validate."""
    decl, labels = validate(raw, base_dir)
    task = CustomTask(decl, labels)
    TASKS[decl.name] = task
    return task


def load_task_file(path: str | Path) -> CustomTask:
    """``--task-file``: a YAML file holding one declaration (the mapping a study's ``tasks:`` entry takes)."""
    from orchestrator.core.errors import StudyError
    from orchestrator.core.yaml_file import parse_yaml

    path = Path(path)
    if not path.is_file():
        raise TaskDeclarationError(f"--task-file {path}: no such file")
    try:  # read as a study file is: not UTF-8, invalid YAML or a repeated key is one line with its place
        _, raw = parse_yaml(path)
    except StudyError as err:
        raise TaskDeclarationError(str(err)) from None
    if not isinstance(raw, dict):
        raise TaskDeclarationError(f"{path}: a task file holds one mapping (name, data, code_field, ...)")
    try:
        return declare(raw, path.parent)
    except TaskDeclarationError as err:
        raise TaskDeclarationError(f"{path}: {err}") from None
