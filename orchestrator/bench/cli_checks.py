"""The bench commands' checks of their flags, before any work (a benchmark may run for most of an hour): a
number out of range, a name the registries do not know, a missing folder, an output that cannot be written, a flag
that would be ignored. Each is one ``error:`` line (``BenchUsageError``), as the study command's."""

from __future__ import annotations

import argparse
from pathlib import Path

KD_METHODS = ("kd", "dist", "pkd", "ckd")
# overhead's defaults, to tell a flag the user gave (_not_applicable)
OVERHEAD_DEFAULTS = {"data": "data/local", "methods": ",".join(KD_METHODS), "precision": "auto"}


class BenchUsageError(Exception):
    """A mistake in the command line or its files: reported as one line ``error: ...``, exit status 2."""


def check_out(path: str) -> None:
    """Fail before any work when ``--out`` cannot be written (a benchmark may run for most of an hour)."""
    from tasks.cli_errors import output_file_problem

    if problem := output_file_problem(path):
        raise BenchUsageError(problem)


def plain_data(data: str) -> None:
    """``overhead`` and ``packing``: ``hub``, the default local folder (built when missing) or an existing folder."""
    from orchestrator.train.trial import DEFAULT_DATA

    if data != "hub" and not Path(data).exists() and Path(data).resolve() != DEFAULT_DATA.resolve():
        raise BenchUsageError(
            f"--data {data}: no such folder; build one with python -m tasks.build_local --out {data} or pass --data hub"
        )


# Counts a subcommand that has them must keep >= 1; --lr, --max-length and --device are checked as the trial
# command checks them (orchestrator/train/cli_checks.py value_problem).
AT_LEAST_ONE = ("steps", "epochs", "batch_size", "every", "max_samples", "labelled", "samples")


def check_values(args: argparse.Namespace) -> None:
    """BenchUsageError for a number out of range, a task, student, method or hyperparameter the registries do not
    know, or a data folder or teacher folder that is not there: before any work."""
    from orchestrator.train.cli_checks import value_problem

    for dest in AT_LEAST_ONE:
        value = getattr(args, dest, None)
        if type(value) is int and value < 1:
            raise BenchUsageError(f"--{dest.replace('_', '-')} must be >= 1, got {value}")
    numbers = (getattr(args, a, None) for a in ("lr", "max_length"))
    problem = value_problem(*numbers, getattr(args, "device", "auto"))
    for check in (_names, _not_applicable, _numbers_in_text, _paths):
        problem = problem or check(args)
    if problem:
        raise BenchUsageError(problem)


def _not_applicable(args: argparse.Namespace) -> str | None:
    """``overhead --task completion`` measures the completion study's teacher modes on its own proxy model and
    data: a ``--data``, ``--methods`` or ``--precision`` given with it would be ignored, and the figures read as if
    they had been measured that way."""
    if args.bench != "overhead" or args.task != "completion":
        return None
    given = [
        f"--{dest}"
        for dest in ("data", "methods", "precision")
        if getattr(args, dest) != OVERHEAD_DEFAULTS[dest]
    ]
    if not given:
        return None
    verb, them = ("does", "it") if len(given) == 1 else ("do", "them")
    return (
        f"{', '.join(given)} {verb} not apply to --task completion (it times the completion study's teacher modes "
        f"on its own proxy model and data); leave {them} out, or name a classification task"
    )


def _names(args: argparse.Namespace) -> str | None:
    from orchestrator.cli_help import METHOD_NAMES, STUDENT_NAMES
    from orchestrator.train.cli_checks import param_problem, parse_value
    from tasks import BUILTIN_TASKS

    tasks = sorted(BUILTIN_TASKS) + (["completion"] if args.bench == "overhead" else [])
    task = getattr(args, "task", None)
    if task is not None and task not in tasks:
        return f"--task: unknown task '{task}'; valid: {tasks}"
    student = getattr(args, "student", None)
    if student is not None and student not in STUDENT_NAMES:
        return f"--student: unknown student '{student}'; valid: {list(STUDENT_NAMES)}"
    if args.bench != "diagnose":
        return None
    if args.method is not None and args.method not in METHOD_NAMES:
        return f"--method: unknown method '{args.method}'; valid: {list(METHOD_NAMES)}"
    pairs = [p.partition("=") for p in args.param]
    bad = next((f"{k}{s}{v}" for k, s, v in pairs if not (s and k)), None)
    if bad is not None:
        return f"--param expects KEY=VALUE, got '{bad}'"
    method = args.method or ("ft" if args.mode == "train" else None)
    if pairs and method is None:
        return "--param needs --method (--mode init without one runs every INIT_RUNS row with its own)"
    return param_problem(method, {k: parse_value(v) for k, _, v in pairs}) if pairs and method else None


def _numbers_in_text(args: argparse.Namespace) -> str | None:
    """``--margins`` (numbers) and ``--hole-window`` (B,A: two integers >= 0)."""
    import math

    margins = getattr(args, "margins", None)
    if margins is not None:
        try:
            values = [float(m) for m in margins.split(",") if m.strip()]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(m) for m in values):
            return f"--margins expects comma-separated numbers, got '{margins}'"
    window = getattr(args, "hole_window", None)
    if window is not None:
        parts = window.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            return (
                f"--hole-window expects B,A (lines above and below the hole, integers >= 0), got '{window}'"
            )
    return None


def _paths(args: argparse.Namespace) -> str | None:
    """diagnose (train) and teacher-states: the data folder with the task's files, and a teacher folder."""
    from orchestrator.train.cli_checks import teacher_problem
    from orchestrator.train.trial import DEFAULT_DATA, resolve_teacher
    from tasks import get_task

    teacher = getattr(args, "teacher", None)
    if teacher and args.bench in ("diagnose", "teacher-states", "transfer", "transfer-design"):
        problem = teacher_problem(resolve_teacher(teacher), must_exist=True)
        if problem:
            return problem
    reads = args.bench == "teacher-states" or (args.bench == "diagnose" and args.mode == "train")
    if not reads:
        return None
    root = Path(args.data).expanduser()
    if args.bench == "diagnose" and not root.exists() and root.resolve() == DEFAULT_DATA.resolve():
        return None  # built from real code on first use (orchestrator/train/trial.py resolve_data)
    if not root.is_dir():
        return f"--data {root}: no such folder; build one with python -m tasks.build_local --out {root}"
    missing = get_task(args.task).missing_files(
        root / args.task
    )  # a layout of its own (official clone files)
    if missing:
        return f"--data {root}: no {args.task} data there ({args.task}/{missing[0]} is missing)"
    return None
