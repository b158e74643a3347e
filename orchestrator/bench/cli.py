"""``python -m orchestrator.bench overhead|transfer|packing ...``: the benchmarks' command line.

python -m orchestrator.bench overhead --out results.json             # what KD costs over FT (time)
python -m orchestrator.bench transfer --out transfer.json            # does each KD method transfer knowledge
python -m orchestrator.bench transfer-design --out design.json       # the transfer check's design measurements
python -m orchestrator.bench packing --out packing.json              # trials per hour, 1-8 trials per device
python -m orchestrator.bench completion-kd --out completion_kd.json  # distil vs the LM-only baseline (ES/EM, ppl)
python -m orchestrator.bench diagnose --mode init --out init.json    # each loss term's value and gradient norm
python -m orchestrator.bench teacher-states --teacher DIR --out s.json # what a teacher's states carry per layer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.train.config import PRECISION_HELP, PRECISIONS

KD_METHODS = ("kd", "dist", "pkd", "ckd")
TRANSFER_DATA = (
    "data/transfer"  # the transfer check's default data, built with its size's counts when missing
)
USER_ERROR = 2


class BenchUsageError(Exception):
    """A mistake in the command line or its files: reported as one line ``error: ...``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line ``error: ...`` with exit status 2 (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        raise BenchUsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    from orchestrator.bench.sizes import OVERHEAD_SIZES, PACKING_SIZES

    p = _Parser(
        prog="python -m orchestrator.bench",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    o = sub.add_parser(
        "overhead",
        help="KD vs FT training time, teacher cached vs online",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    o.add_argument("--out", default="results.json")
    o.add_argument("--size", default="default", choices=sorted(OVERHEAD_SIZES))
    o.add_argument("--steps", type=int, help="optimiser steps per run (default: the size's)")
    o.add_argument("--data", default="data/local", help="'hub' or a folder of JSON Lines (built if missing)")
    o.add_argument(
        "--task", default="exception", help="a classification task, or completion (cached/online/in-training)"
    )
    o.add_argument("--device", default="auto")
    o.add_argument(
        "--methods", default=",".join(KD_METHODS), help="comma-separated subset of kd,dist,pkd,ckd"
    )
    o.add_argument("--work", help="folder for the teacher, tokenizer and cache (default: a temporary one)")
    o.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    _add_transfer(sub)
    k = sub.add_parser(
        "packing",
        help="trials per hour with 1, 2, 4, 8 trials sharing one device (CPU: the cores split between them)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--out", default="packing.json")
    k.add_argument("--size", default="default", choices=sorted(PACKING_SIZES))
    k.add_argument("--counts", help="comma-separated trials per device (default: the size's, e.g. 1,2,4,8)")
    k.add_argument("--data", default="data/local", help="'hub' or a folder of JSON Lines (built if missing)")
    k.add_argument("--device", default="auto")
    k.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    k.add_argument("--work", help="folder for the tokenizer (default: a temporary one)")
    c = sub.add_parser(
        "completion-kd",
        help="completion study: distil vs the LM-only baseline on a teacher LM-trained here (ES/EM, perplexity)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    c.add_argument("--out", default="completion_kd.json")
    c.add_argument("--size", default="cpu", choices=["cpu", "gpu", "tiny"])
    c.add_argument("--data", default="data/local/completion", help="the completion proxy's folder")
    c.add_argument("--device", default="auto")
    c.add_argument("--work", help="folder for the teacher (default: a temporary one)")
    from orchestrator.bench.diagnose import add_parser as add_diagnose  # torch-free: --help stays fast

    add_diagnose(sub)
    from orchestrator.bench.teacher_states import add_parser as add_teacher_states

    add_teacher_states(sub)
    return p


def _add_transfer(sub: Any) -> None:
    """The knowledge-transfer check and its design probe."""
    from orchestrator.bench.sizes import TRANSFER_SIZES

    t = sub.add_parser(
        "transfer",
        help="does each KD method pass a real teacher's advantage on to its student (several seeds, paired)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--out", default="transfer.json")
    t.add_argument("--size", default="cpu", choices=sorted(TRANSFER_SIZES))
    t.add_argument("--teacher", default="minilm", help="minilm (offline), a hub id or a local model folder")
    t.add_argument(
        "--data",
        default=TRANSFER_DATA,
        help=f"a folder from python -m tasks.build_local holding the size's task with enough training inputs "
        f"({TRANSFER_DATA} is built when missing, with the size's counts)",
    )
    t.add_argument("--device", default="auto")
    t.add_argument("--work", help="folder for the teacher, tokenizers and cache (default: a temporary one)")
    d = sub.add_parser(
        "transfer-design",
        help="the transfer check's design measurements: teacher and FT on N labels, time per step (no KD outcome)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--out", default="transfer_design.json")
    d.add_argument("--size", default="cpu", choices=sorted(TRANSFER_SIZES))
    d.add_argument("--labelled", default="250,500,1000", help="comma-separated labelled counts to measure")
    d.add_argument("--teacher", default="minilm", help="minilm (offline), a hub id or a local model folder")
    d.add_argument("--task", help="measure on this task instead of the size's (e.g. clone)")
    d.add_argument(
        "--timing-only",
        action="store_true",
        help="only the costs: a few timed teacher and student steps, the cache's teacher pass (no labelled counts)",
    )
    d.add_argument("--data", default=TRANSFER_DATA, help="as for transfer")
    d.add_argument("--device", default="auto")
    d.add_argument("--work", help="folder for teachers, tokenizers and caches (default: a temporary one)")


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


def transfer_data(args: argparse.Namespace, size: object) -> str:
    """The check's data folder: the default one is built when missing; any other must exist with its task."""
    from orchestrator.bench.sizes import TransferSize

    assert isinstance(size, TransferSize)
    task = args.task if getattr(args, "task", None) else size.task
    folder = Path(args.data)
    if not (folder / task).is_dir() and args.data == TRANSFER_DATA and size.build:
        from tasks.build_local import build_local

        print(
            f"building the transfer check's data under {folder} (python -m tasks.build_local)",
            file=sys.stderr,
        )
        build_local(folder, sizes=size.build, tasks=[task])
    if not (folder / task).is_dir():
        build = " ".join(f"--{k} {v}" for k, v in (size.build or {}).items())
        raise BenchUsageError(
            f"--data {folder}: no {task} data there ({folder / task} is missing); build it with "
            f"python -m tasks.build_local --out {folder} --tasks {task} {build}".rstrip()
        )
    return str(folder)


def _run(args: argparse.Namespace, work: Path) -> tuple[dict, object]:
    if args.bench == "overhead" and args.task == "completion":  # the LM study's teacher modes
        from orchestrator.bench import lm_overhead

        return lm_overhead.lm_overhead(args.size, args.device, args.steps), lm_overhead.print_table
    if args.bench == "overhead":
        from orchestrator.bench import overhead

        size = overhead.SIZES[args.size]
        if args.steps:
            size = overhead.BenchSize(**{**vars(size), "steps": args.steps})
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        unknown = sorted(set(methods) - set(KD_METHODS))
        if unknown:
            raise BenchUsageError(f"unknown method(s) {unknown}; valid: {list(KD_METHODS)}")
        results = overhead.overhead(size, args.data, work, args.device, args.task, methods, args.precision)
        return results, overhead.print_table
    if args.bench == "packing":
        from orchestrator.bench import packing

        counts = None
        if args.counts:
            try:
                counts = tuple(int(c) for c in args.counts.split(",") if c.strip())
            except ValueError:
                counts = ()
            if not counts or min(counts) < 1:
                raise BenchUsageError(
                    f"--counts expects comma-separated positive integers, got '{args.counts}'"
                )
        size = packing.SIZES[args.size]
        return packing.packing(
            size, args.data, work, args.device, args.precision, counts=counts
        ), packing.print_table
    if args.bench == "completion-kd":
        from orchestrator.bench import completion_kd

        return completion_kd.completion_kd(args.size, args.data, work, args.device), completion_kd.print_table
    if args.bench == "diagnose":
        from orchestrator.bench import diagnose

        return diagnose.run(args, work), diagnose.print_table
    if args.bench == "teacher-states":
        from orchestrator.bench import teacher_states

        return teacher_states.run(args, work), teacher_states.print_table
    if args.bench == "transfer-design":
        from orchestrator.bench import transfer_design

        try:
            counts = [int(c) for c in args.labelled.split(",") if c.strip()]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            raise BenchUsageError(
                f"--labelled expects comma-separated positive integers, got '{args.labelled}'"
            )
        size = transfer_design.SIZES[args.size]
        data = transfer_data(args, size)
        results = transfer_design.design(
            size, data, work, counts, args.device, args.teacher, args.task, args.timing_only
        )
        return results, transfer_design.print_table
    from orchestrator.bench import transfer

    size = transfer.SIZES[args.size]
    data = transfer_data(args, size)
    return transfer.transfer(size, data, work, args.device, args.teacher), transfer.print_table


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
    for check in (_names, _numbers_in_text, _paths):
        problem = problem or check(args)
    if problem:
        raise BenchUsageError(problem)


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
    from tasks.custom import split_path

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
    missing = [s for s in ("train", "validation", "test") if split_path(root / args.task, s) is None]
    if missing:
        return f"--data {root}: no {args.task} data there ({args.task}/{missing[0]}.jsonl is missing)"
    return None


def user_error(err: BaseException) -> bool:
    """Whether ``err`` is a mistake the user can fix (bad flags, missing or too small data, a missing teacher)."""
    from orchestrator.core.errors import StudyError
    from tasks.hole_window import DataError
    from tasks.labels import LabelSpecError

    kinds: list[type] = [BenchUsageError, DataError, LabelSpecError, StudyError]
    kinds += [FileNotFoundError, NotADirectoryError]  # a file that vanished while it ran
    teacher = sys.modules.get("models.teacher")  # loaded only once a model was asked for (a fast --help)
    if teacher is not None:
        kinds.append(teacher.ModelNotAvailableError)
    return isinstance(err, tuple(kinds))


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        check_out(args.out)
        check_values(args)
        if args.bench in ("overhead", "packing") and not (
            args.bench == "overhead" and args.task == "completion"
        ):
            plain_data(args.data)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        with tempfile.TemporaryDirectory(prefix="kdbench-") as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            results, show = _run(args, work)
        Path(args.out).write_text(json.dumps(results, indent=2))
    except Exception as err:
        if not user_error(err):
            raise
        from orchestrator.core.errors import one_line

        named = isinstance(err, OSError) and err.filename
        print(f"error: {one_line(f'{err.filename}: {err.strerror}' if named else str(err))}", file=sys.stderr)
        return USER_ERROR
    show(results)  # type: ignore[operator]
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
