"""User mistakes on ``python -m orchestrator.trial`` and ``python -m orchestrator.finetune_teacher``: one line
``error: ...`` on stderr and exit status 2, as the study command does (orchestrator/core/errors.py), never a
traceback. Programming errors keep theirs.

Most mistakes are found before any model is built (``check_inputs``: the data folder and its files, a KD method
without a teacher, a method hyperparameter the method does not have); the few that only show while running (a
teacher folder or hub model that is not there, the hub unreachable offline, a file that vanished) are recognised by
their types in ``guarded``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core.errors import USER_ERROR, StudyError, one_line


class InputError(StudyError):
    """A command-line value that cannot work; the message names the option."""


def data_problem(task: str, data: str, default: Path) -> str | None:
    """Why ``--data`` cannot serve ``task`` (None if it can): a folder that is not there, or the first mistake in
    the task's files (tasks/data_check.py). ``hub`` and the default folder (built on first use) are accepted."""
    from tasks import get_task, is_custom
    from tasks.data_check import first_problem

    if is_custom(task):  # a declared task reads its own folder, whatever --data says
        return first_problem(get_task(task))
    if data == "hub":
        return None
    root = Path(data).expanduser()
    if not root.exists():
        if root.resolve() == default.resolve():
            return None  # built from real code on first use (orchestrator/train/trial.py: resolve_data)
        return (
            f"--data: folder {root} does not exist; build it with `python -m tasks.build_local --out {root}` "
            "or pass --data hub"
        )
    if not root.is_dir():
        return f"--data: {root} is a file, not a folder"
    return first_problem(get_task(task), root / task)


def method_problem(method: str, teacher: str | None, params: dict[str, Any]) -> str | None:
    from kd_methods import get_method

    m = get_method(method)
    if m.family != "none" and not teacher:
        return f"--method {method} needs a teacher: pass --teacher (a folder from python -m orchestrator.finetune_teacher)"
    unknown = sorted(set(params) - set(m.defaults))
    if unknown:
        return (
            f"--param: unknown hyperparameter(s) {unknown} for method '{method}'; valid: {sorted(m.defaults)}"
        )
    return None


def check_inputs(
    task: str,
    data: str,
    default_data: Path,
    max_samples: int | None,
    method: str | None = None,
    teacher: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """InputError for the first mistake in the command's inputs (before anything is built or loaded)."""
    if max_samples is not None and max_samples < 1:
        raise InputError(f"--max-samples must be >= 1, got {max_samples}")
    problem = data_problem(task, data, default_data)
    if problem is None and method is not None:
        problem = method_problem(method, teacher, params or {})
    if problem:
        raise InputError(problem)


def _user_error(err: BaseException) -> bool:
    """Mistakes that show only while running; their modules are loaded when they were raised (no import here)."""
    teacher = sys.modules.get("models.teacher")
    hub = sys.modules.get("tasks.hub_access")
    return (
        isinstance(err, (StudyError, FileNotFoundError, NotADirectoryError))
        or (teacher is not None and isinstance(err, teacher.ModelNotAvailableError))
        or (hub is not None and isinstance(err, hub.HubUnavailableError))
    )


def guarded(command: Callable[[], int]) -> int:
    """``command()``, with a user's mistake as one ``error:`` line and exit status 2."""
    try:
        return command()
    except Exception as err:
        if not _user_error(err):
            raise
        text = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"error: {one_line(text)}", file=sys.stderr)
        return USER_ERROR


LABELS_HELP = (
    "labels on part of the training split, by the name its runs are tagged with: all (default), count=N or "
    "fraction=F (;seed=S ;stratified); FT and a teacher train on that part, KD methods on every input"
)


def labels_argument(p: argparse.ArgumentParser, text: str) -> dict[str, Any] | None:
    """``--labels`` as the ``LabelSpec`` mapping a trial config carries (exits with one line when unreadable)."""
    from tasks.labels import LabelSpec, LabelSpecError

    try:
        spec = LabelSpec.from_text(text)
    except LabelSpecError as err:
        p.error(f"--labels: {err}")
    return None if spec is None else spec.to_dict()


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON when it reads as JSON (numbers, true/false), else the text itself."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
