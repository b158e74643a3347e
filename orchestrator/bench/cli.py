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

from orchestrator.bench.cli_checks import (
    KD_METHODS,
    OVERHEAD_DEFAULTS,
    BenchUsageError,
    check_out,
    check_values,
    plain_data,
)
from orchestrator.cli_help import HelpFormatter
from orchestrator.train.config import PRECISION_HELP, PRECISIONS

TRANSFER_DATA = (
    "data/transfer"  # the transfer check's default data, built with its size's counts when missing
)
USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line ``error: ...`` with exit status 2 (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        raise BenchUsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    from orchestrator.bench.sizes import OVERHEAD_SIZES, PACKING_SIZES

    p = _Parser(
        prog="python -m orchestrator.bench",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    o = sub.add_parser(
        "overhead",
        help="KD vs FT training time, teacher cached vs online",
        formatter_class=HelpFormatter,
    )
    o.add_argument("--out", default="results.json")
    o.add_argument("--size", default="default", choices=sorted(OVERHEAD_SIZES))
    o.add_argument("--steps", type=int, help="optimiser steps per run (default: the size's)")
    o.add_argument(
        "--data", default=OVERHEAD_DEFAULTS["data"], help="'hub' or a folder of JSON Lines (built if missing)"
    )
    o.add_argument(
        "--task", default="exception", help="a classification task, or completion (cached/online/in-training)"
    )
    o.add_argument("--device", default="auto")
    o.add_argument(
        "--methods", default=OVERHEAD_DEFAULTS["methods"], help="comma-separated subset of kd,dist,pkd,ckd"
    )
    o.add_argument("--work", help="folder for the teacher, tokenizer and cache (default: a temporary one)")
    o.add_argument(
        "--precision", default=OVERHEAD_DEFAULTS["precision"], choices=PRECISIONS, help=PRECISION_HELP
    )
    _add_transfer(sub)
    k = sub.add_parser(
        "packing",
        help="trials per hour with 1, 2, 4, 8 trials sharing one device (CPU: the cores split between them)",
        formatter_class=HelpFormatter,
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
        formatter_class=HelpFormatter,
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
        formatter_class=HelpFormatter,
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
        formatter_class=HelpFormatter,
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
