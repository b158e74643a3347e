"""A declared task's data files, read through once before anything starts (issue 24).

A mistake in a user's own ``train.jsonl`` / ``validation.jsonl`` / ``test.jsonl`` (a line that is not JSON, a
missing code field, a label not in the declared list, labels written as integers in one place and text in another,
an empty split, a byte that is not UTF-8) would otherwise surface only when a worker loads the data, after Ray and
MLflow have started, as a traceback. ``first_problem`` finds the first such mistake of a task (its ``unlabelled.jsonl`` too, if it has one)
and says it in one line naming the file, the line and the field (with the valid labels); the study's validation
(``orchestrator/design/validate.py``) calls it for the run and for ``--plan``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tasks.base import SPLITS, RecordError, Task, text_lines
from tasks.custom import SPLIT_FILES, CustomTask, TaskDeclaration, _label_key, split_path
from tasks.labels import load_unlabelled, unlabelled_path


def task_from_entry(entry: Mapping[str, Any]) -> CustomTask:
    """The task a validated study's ``custom_tasks`` entry declares (its labels already resolved; whether they were
    inferred from the training split, the task registered for it in this process says)."""
    from tasks.registry import TASKS

    task = CustomTask(TaskDeclaration.model_validate(dict(entry)), list(entry["labels"]))
    declared = TASKS.get(task.name)
    if (
        isinstance(declared, CustomTask)
        and declared.data_dir == task.data_dir
        and declared.label_values == task.label_values
    ):
        task.labels_inferred = declared.labels_inferred
    return task


def declared_data_problems(
    entries: Iterable[Mapping[str, Any]], names: Iterable[str], max_samples: int | None = None
) -> list[str]:
    """One line per declared task among ``names`` whose files hold a mistake (its first)."""
    wanted = set(names)
    out = []
    for entry in entries:
        if entry.get("name") in wanted:
            problem = first_problem(task_from_entry(entry), max_samples=max_samples)
            if problem:
                out.append(f"task '{entry['name']}': {problem}")
    return out


def first_problem(task: Task, folder: str | Path | None = None, max_samples: int | None = None) -> str | None:
    """The first mistake in ``task``'s three files (a declared task's own folder, or ``folder``: a built-in task's
    ``<data>/<task>``), as ``file:line: what (field, valid values)``; None if none. A training split whose records
    (its first ``max_samples``: what a trial reads) hold one class is one: every model of it predicts that class."""
    folder = Path(folder) if folder is not None else task.data_dir  # type: ignore[attr-defined]
    if task.official_layout(folder):  # clone: CodeXGLUE's data.jsonl + *.txt (tasks/clone_official.py)
        return task.official_problem(folder)
    first_kind: tuple[str, str, Any] | None = None  # (where, JSON type, value) of the first label seen
    for split in SPLITS:
        path = split_path(folder, split)
        if path is None:
            hint = f"; {h}" if (h := task.layout_hint(folder)) else ""
            return f"{folder}: no {split} file ({' or '.join(SPLIT_FILES[split])}{hint})"
        records, classes = 0, set()
        try:
            for lineno, line in text_lines(path):
                if not line.strip():
                    continue
                records += 1
                problem, first_kind, label = _line_problem(task, line, f"{path}:{lineno}", first_kind)
                if problem:
                    return problem
                if split == "train" and (max_samples is None or records <= max_samples):
                    classes.add(label)
        except ValueError as err:  # a line that is not UTF-8 (text_lines names the file, line and byte)
            return str(err)
        if records == 0:
            return f"{path}: the {split} split is empty (no records); it needs at least one"
        if split == "train" and len(classes) == 1:
            read = "every record has" if max_samples is None or records <= max_samples else (
                f"its first {max_samples} records (max_samples: what a trial reads) have"
            )  # fmt: skip
            return (
                f"{path}: {read} label {next(iter(classes))!r}; a classifier needs two classes to learn from "
                "(shuffle the file, or raise max_samples)"
            )
    return unlabelled_problem(task, folder)


def unlabelled_problem(task: Task, folder: Path) -> str | None:
    """The first mistake in the folder's ``unlabelled.jsonl`` (tasks/labels.py), if it has one: a line that is not
    JSON or lacks the code field(s), as ``file:line: what``."""
    path = unlabelled_path(folder)
    if path is None:
        return None
    try:
        load_unlabelled(task, path)
    except ValueError as err:
        return str(err)
    return None


def _line_problem(
    task: Task, line: str, where: str, first_kind: tuple[str, str, Any] | None
) -> tuple[str | None, tuple[str, str, Any] | None, Any]:
    """(the line's problem or None, the first label's kind so far, the line's label as classes compare it)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"{where}: not valid JSON ({exc.msg} at column {exc.colno})", first_kind, None
    try:
        # the fields, the code's type and the label, as the trial reads them
        _, _, index = task.preprocess(record)
    except RecordError as exc:
        return f"{where}: {exc}", first_kind, None
    label = list(getattr(task, "label_values", task.label_names))[index]  # its class ("1" and "true": one)
    # Text and integers both match a label ("1" and 1), so a file mixing them loads; but an inferred label list
    # then holds both spellings as different classes, and a declared one was written one way: say which line.
    value = record[task.label_field]
    kind = "integer" if isinstance(_label_key(value), int) else "text"
    if first_kind is None:
        return None, (where, kind, value), label
    if kind != first_kind[1]:
        return (
            (
                f"{where}: field '{task.label_field}': label {value!r} is {kind}, but the labels before it are "
                f"{first_kind[1]} (first at {first_kind[0]}: {first_kind[2]!r}); write every label the same way; "
                f"valid: {list(getattr(task, 'label_values', task.label_names))}"
            ),
            first_kind,
            label,
        )
    return None, first_kind, label
