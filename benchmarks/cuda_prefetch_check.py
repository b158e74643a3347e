"""Does the CUDA path of the prefetching reader give the same training as reading the cache in the main thread?

    python benchmarks/cuda_prefetch_check.py --data data/local --out prefetch_check.json   # on a CUDA machine

The trainer reads cached teacher signals for batch k+1 on a reader thread, pins them and copies them with
``non_blocking`` on a side CUDA stream while step k runs (orchestrator/train/prefetch.py). A missed stream
synchronisation or a buffer reused too early would not crash: it would train on the wrong numbers. So the same
KD and CKD trials (fp32, a small random teacher, 1 epoch) run twice from one cache, once through the prefetching
reader and once through a source that hides ``fetch``/``finish`` (so the loop calls ``signals`` and copies in the
main thread), and their per-epoch training losses and validation scores are compared. CUDA kernels are not
bit-deterministic, so the bar is a relative difference below 1e-3. Prints one JSON object; exit 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from models.teacher import Teacher, create_random_teacher
from orchestrator.bench.overhead import build_shared_cache
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.trainer import TrainConfig
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial, student_shape
from tasks import TaskData
from tasks.cli_errors import OneLineArgumentParser


class MainThreadReads:
    """The cache behind ``signals`` only: the trainer then reads and copies each batch in its own thread."""

    def __init__(self, cached: CachedTeacher) -> None:
        self.cached = cached

    def signals(self, split: str, indices: torch.Tensor, spec: Any) -> Any:
        return self.cached.signals(split, indices, spec)


def _prepared(data: str, work: Path, n: int) -> PreparedTrial:
    base = TrialConfig(
        task="exception",
        student="roberta-tiny",
        method="ft",
        data=data,
        max_length=128,
        cache_dir=str(work / "tok"),
    )
    full = prepare(base)
    td = full.task_data
    sub = TaskData(td.train[:n], td.validation[:64], td.test[:64])
    enc = {k: v for k, v in full.encoded.items()}
    enc["train"] = type(enc["train"])(
        enc["train"].input_ids[:n], enc["train"].labels[:n], enc["train"].pad_id
    )
    for s in ("validation", "test"):
        enc[s] = type(enc[s])(enc[s].input_ids[:64], enc[s].labels[:64], enc[s].pad_id)
    return PreparedTrial(sub, full.tokenizer, enc, full.num_labels)


def main() -> int:
    with tempfile.TemporaryDirectory(
        prefix="prefetch-check-"
    ) as work:  # teacher, tokenizer, cache: removed after
        return check(Path(work))


def check(work: Path) -> int:
    ap = OneLineArgumentParser(
        prog="python benchmarks/cuda_prefetch_check.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data", default="data/local")
    ap.add_argument("--out", default="prefetch_check.json")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--device", default="cuda", help="cuda (the point of the check); cpu for a dry run")
    args = ap.parse_args()
    if not (Path(args.data) / "exception").is_dir():
        ap.error(
            f"--data {args.data}: no exception data there (python -m tasks.build_local --out {args.data})"
        )
    if args.device not in ("cuda", "cpu"):
        ap.error(f"--device: unknown device '{args.device}'; valid: cuda, cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device: this check is for the CUDA path", file=sys.stderr)
        return 2
    prepared = _prepared(args.data, work, args.samples)
    teacher_dir = create_random_teacher(
        work / "teacher",
        num_layers=4,
        hidden_size=256,
        num_heads=4,
        intermediate_size=1024,
        tokenizer_texts=[ex.code for ex in prepared.task_data.train],
        vocab_size=4000,
        num_labels=prepared.num_labels,
        max_length=128,
    )
    tshape = Teacher.load(str(teacher_dir), prepared.num_labels).shape
    sshape = student_shape("roberta-tiny")
    report, _, reads = build_shared_cache(
        "exception", teacher_dir, tshape, sshape, 128, prepared, work, args.device, 32, "fp32"
    )
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    out: dict[str, Any] = {"device": name, "methods": {}}
    ok = True
    for method, params in (("kd", {"temperature": 2.0}), ("ckd", {"beta": 1.0, "gamma": 1.0})):
        cached = CachedTeacher.open(report.path, reads=reads[method])
        rows = {}
        for name, source in (("prefetch", cached), ("main_thread", MainThreadReads(cached))):
            cfg = TrialConfig(
                task="exception",
                student="roberta-tiny",
                method=method,
                method_params=params,
                max_length=128,
                seed=0,
                train=TrainConfig(epochs=2, batch_size=32, lr=1e-3, device=args.device, precision="fp32"),
            )
            res = run_trial(cfg, teacher_source=source, teacher_shape=tshape, prepared=prepared)
            rows[name] = [h["train_loss"] for h in res.history] + [res.best_val["selection_score"]]
        diff = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(rows["prefetch"], rows["main_thread"]))
        out["methods"][method] = {**rows, "max_rel_diff": diff, "equal": diff < 1e-3}
        ok &= diff < 1e-3
    out["passed"] = ok
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
