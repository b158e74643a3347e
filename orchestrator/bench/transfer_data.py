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


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.bench.transfer_data --data DIR``: the holes-in-view table (docs/METHODS.md)."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser(
        prog="python -m orchestrator.bench.transfer_data", description=holes_in_view.__doc__
    )
    p.add_argument("--data", default="data/transfer")
    p.add_argument("--student", default="roberta-0.6m")
    p.add_argument("--teacher", default="minilm")
    p.add_argument("--lengths", default="128,256,384,512")
    p.add_argument("--window", help="lines above,below the hole (e.g. 6,2); default: whole functions")
    args = p.parse_args(argv)
    if not (Path(args.data) / "exception").is_dir():
        p.exit(2, f"error: --data {args.data}: no exception data there\n")
    lengths = tuple(int(x) for x in args.lengths.split(","))
    window = tuple(int(x) for x in args.window.split(",")) if args.window else None
    with tempfile.TemporaryDirectory() as tmp:
        r = holes_in_view(args.data, args.student, args.teacher, lengths, window, Path(tmp))  # type: ignore[arg-type]
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
