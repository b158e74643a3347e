"""``python -m orchestrator.bench overhead|transfer|packing ...``: the benchmarks' command line.

python -m orchestrator.bench overhead --out results.json             # what KD costs over FT (time)
python -m orchestrator.bench transfer --out transfer.json            # does each KD method transfer knowledge
python -m orchestrator.bench packing --out packing.json              # trials per hour, 1-8 trials per device
python -m orchestrator.bench completion-kd --out completion_kd.json  # distil vs the LM-only baseline (ES/EM, ppl)
python -m orchestrator.bench diagnose --mode init --out init.json    # each loss term's value and gradient norm
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from orchestrator.train.config import PRECISION_HELP, PRECISIONS

KD_METHODS = ("kd", "dist", "pkd", "ckd")


def _parser() -> argparse.ArgumentParser:
    from orchestrator.bench.sizes import OVERHEAD_SIZES, PACKING_SIZES, TRANSFER_SIZES

    p = argparse.ArgumentParser(
        prog="python -m orchestrator.bench",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="bench", required=True)
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
    t = sub.add_parser(
        "transfer",
        help="does each KD method pass a real teacher's advantage on to its student (several seeds, paired)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--out", default="transfer.json")
    t.add_argument("--size", default="cpu", choices=sorted(TRANSFER_SIZES))
    t.add_argument("--teacher", default="minilm", help="minilm (offline), a hub id or a local model folder")
    t.add_argument("--data", default="data/local", help="'hub' or a folder of JSON Lines (built if missing)")
    t.add_argument("--device", default="auto")
    t.add_argument("--work", help="folder for the teacher, tokenizers and cache (default: a temporary one)")
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
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="kdbench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        if args.bench == "overhead" and args.task == "completion":  # the LM study's teacher modes
            from orchestrator.bench import lm_overhead

            results = lm_overhead.lm_overhead(args.size, args.device, args.steps)
            show = lm_overhead.print_table
        elif args.bench == "overhead":
            from orchestrator.bench import overhead

            size = overhead.SIZES[args.size]
            if args.steps:
                size = overhead.BenchSize(**{**vars(size), "steps": args.steps})
            methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
            unknown = sorted(set(methods) - set(KD_METHODS))
            if unknown:
                p.error(f"unknown method(s) {unknown}; valid: {list(KD_METHODS)}")
            results = overhead.overhead(
                size, args.data, work, args.device, args.task, methods, args.precision
            )
            show = overhead.print_table
        elif args.bench == "completion-kd":
            from orchestrator.bench import completion_kd

            results = completion_kd.completion_kd(args.size, args.data, work, args.device)
            show = completion_kd.print_table
        elif args.bench == "packing":
            from orchestrator.bench import packing

            counts = None
            if args.counts:
                try:
                    counts = tuple(int(c) for c in args.counts.split(",") if c.strip())
                except ValueError:
                    p.error(f"--counts expects comma-separated positive integers, got '{args.counts}'")
                if not counts or min(counts) < 1:
                    p.error(f"--counts expects comma-separated positive integers, got '{args.counts}'")
            results = packing.packing(
                packing.SIZES[args.size], args.data, work, args.device, args.precision, counts=counts
            )
            show = packing.print_table
        elif args.bench == "diagnose":
            from orchestrator.bench import diagnose

            results, show = diagnose.run(args, work), diagnose.print_table
        else:
            from orchestrator.bench import transfer

            results = transfer.transfer(transfer.SIZES[args.size], args.data, work, args.device, args.teacher)
            show = transfer.print_table
    Path(args.out).write_text(json.dumps(results, indent=2))
    show(results)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
