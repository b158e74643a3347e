"""The transfer check's data variant, exception functions cut around the masked handler (``tasks/hole_window.py``
says why), and how many holes a max length keeps in view (``python -m orchestrator.bench.transfer_data``). Every model in the check, teacher
and students, reads the same cut data; only the sizes that name a window use it (``gpu`` reads whole functions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.hole_window import HOLE, hole_window_data


def holes_in_view(
    data: str | Path,
    student: str,
    teacher: str,
    lengths: tuple[int, ...],
    window: tuple[int, int] | None,
    work: Path,
) -> dict[str, Any]:
    """Per max length, the share of training samples whose ``__HOLE__`` lies within it, for the student's tokenizer
    and the teacher's, and their mean length at that cap: how much evidence a length keeps (no model is run)."""
    import numpy as np

    from models import get_student_spec
    from models.teacher import Teacher
    from orchestrator.train.trial import family_tokenizer, resolve_teacher
    from tasks import Example, load_task_data

    if window is not None:
        data = hole_window_data(data, work / "window", *window)
    train = load_task_data("exception", data).train
    tok = family_tokenizer("exception", get_student_spec(student).vocab_size, data, work / "tokenizers")
    hf = Teacher.load(resolve_teacher(teacher), 20).tokenizer
    cap = 100_000

    def before(ex: Example) -> Example:
        return Example(ex.idx, ex.code.split(HOLE)[0], ex.label)

    pos = {"student": [len(x) for x in tok.encode([before(ex) for ex in train], cap)]}
    full = {"student": [len(x) for x in tok.encode(train, cap)]}
    pos["teacher"] = [len(hf(before(ex).code)["input_ids"]) for ex in train]
    full["teacher"] = [len(hf(ex.code)["input_ids"]) for ex in train]
    out: dict[str, Any] = {"samples": len(train), "window": window, "lengths": {}}
    for n in lengths:
        # the hole's first token sits after the tokens before it (the leading special token counted there)
        out["lengths"][n] = {
            side: {
                "hole_in_view": float(np.mean(np.asarray(pos[side]) < n - 1)),
                "mean_tokens": float(np.mean(np.minimum(full[side], n))),
            }
            for side in ("student", "teacher")
        }
    return out


def _ints(flag: str, least: int, exact: int | None = None) -> Any:
    """An argparse type: comma-separated integers >= ``least`` (``exact``: that many), named by ``flag``."""
    import argparse

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(x) for x in text.split(","))
        except ValueError:
            values = ()
        if not values or min(values) < least or (exact is not None and len(values) != exact):
            n = f"{exact} " if exact else ""
            raise argparse.ArgumentTypeError(
                f"{flag} expects {n}comma-separated integers >= {least}, got '{text}'"
            )
        return values

    return parse


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.bench.transfer_data --data DIR``: the holes-in-view table (docs/METHODS.md)."""
    import tempfile

    from models.offline import ModelNotAvailableError
    from models.students import STUDENTS
    from tasks.cli_errors import OneLineArgumentParser, fail

    p = OneLineArgumentParser(
        prog="python -m orchestrator.bench.transfer_data",
        description=(holes_in_view.__doc__ or "").split("\n")[0],
    )
    p.add_argument(
        "--data", default="data/transfer", help="local data with exception/ (default: %(default)s)"
    )
    p.add_argument("--student", default="roberta-0.6m", type=str.lower, choices=sorted(STUDENTS))
    p.add_argument(
        "--teacher", default="minilm", help="teacher whose tokenizer is measured (default: %(default)s)"
    )
    p.add_argument("--lengths", default="128,256,384,512", type=_ints("--lengths", 8), help="max lengths")
    p.add_argument(
        "--window",
        type=_ints("--window", 0, exact=2),
        help="lines above,below the hole (e.g. 6,2); default: whole",
    )
    args = p.parse_args(argv)
    if not (Path(args.data) / "exception").is_dir():
        p.exit(2, f"error: --data {args.data}: no exception data there\n")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            r = holes_in_view(args.data, args.student, args.teacher, args.lengths, args.window, Path(tmp))  # type: ignore[arg-type]
    except (
        OSError,
        ValueError,
        ModelNotAvailableError,
    ) as err:  # a teacher that is not there, unreadable data
        fail(err)
    print(
        f"{r['samples']} training samples, window {r['window']}; share with the hole in view (mean tokens):"
    )
    for n, row in r["lengths"].items():
        s, t = row["student"], row["teacher"]
        print(
            f"  {n:>4}: student {s['hole_in_view']:.0%} ({s['mean_tokens']:.0f}), "
            f"teacher {t['hole_in_view']:.0%} ({t['mean_tokens']:.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
