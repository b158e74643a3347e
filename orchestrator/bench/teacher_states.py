"""What a teacher's hidden states carry per sample, layer by layer: can PKD's or CKD's feature target teach anything?

    python -m orchestrator.bench teacher-states --teacher DIR --task exception --data data/local \\
        --hole-window 6,2 --student roberta-0.6m --out states.json

PKD matches L2-normalised [CLS] states of intermediate layers. If one coordinate of a teacher's [CLS] state is far
larger than the rest in every sample (an "outlier" or "massive activation" dimension, as BERT-family models have),
the normalised state points one way for every input and the term asks the student for a constant vector. For each
layer 0..L (0: the embeddings), over ``--samples`` inputs of a split read as a study reads them (the teacher's own
input form, ``Teacher.encode``):

* ``cls.pairwise_cos``: mean cosine between different samples' [CLS] states (1: one direction for all);
* ``cls.centred_pairwise_cos``: the same after subtracting the mean state (what varies, and whether it is shared);
* ``cls.mean_direction_share``: the share of the states' squared norm along their mean direction;
* ``cls.top_dim`` and ``cls.top_dim_share``: the largest coordinate by mean |value| and its share of the norm;
* ``tokens.top_dim_share``: that coordinate's share on every non-padding token (CKD's relations use tokens);
* ``tokens.within_sample_cos``: mean cosine between one sample's token states (anisotropy).

``pkd_layers`` names the teacher layers PKD reads for ``--student`` (its ``teacher_layers``). Runs in-process
on the CPU in about a minute for MiniLM. docs/METHODS.md ("Why PKD and CKD fail the transfer check") shows the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli_help import HelpFormatter


def add_parser(sub: Any) -> None:
    """The ``teacher-states`` subcommand of ``python -m orchestrator.bench``."""
    s = sub.add_parser(
        "teacher-states",
        help="per layer, how much of a teacher's [CLS] and token states varies between samples (PKD/CKD targets)",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    s.add_argument("--out", default="teacher_states.json")
    s.add_argument(
        "--teacher", default="minilm", help="minilm (offline), a hub id or a fine-tuned teacher folder"
    )
    s.add_argument("--task", default="exception")
    s.add_argument("--data", default="data/local", help="a folder of JSON Lines (one sub-folder per task)")
    s.add_argument("--hole-window", help="B,A: cut exception functions as the transfer check does")
    s.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    s.add_argument("--samples", type=int, default=256, help="the split's first N inputs")
    s.add_argument("--max-length", type=int, default=128)
    s.add_argument("--student", default="roberta-0.6m", help="the student whose PKD layer map is reported")
    s.add_argument("--work", help="folder for the cut data (default: a temporary one)")


def _mean_pairwise_cos(x: Any) -> float:
    from orchestrator.cache.spread import mean_pairwise_cos

    return mean_pairwise_cos(x.detach().float().numpy())


def layer_summary(cls: Any, tokens: Any, mask: Any) -> dict[str, Any]:
    """The figures above for one layer: ``cls`` [B, H], ``tokens`` [B, N, H], ``mask`` [B, N] (1: a real token)."""
    import torch.nn.functional as F

    cls = cls.float()
    mean_dir = F.normalize(cls.mean(0), dim=0)
    norm2 = float((cls**2).sum())
    top = int(cls.abs().mean(0).argmax())
    real = tokens.float()[mask.bool()]
    within = []
    for b in range(tokens.shape[0]):
        if int(mask[b].sum()) < 2:  # one token: no pair to compare
            continue
        within.append(_mean_pairwise_cos(tokens[b][mask[b].bool()].float()))
    return {
        "cls": {
            "pairwise_cos": _mean_pairwise_cos(cls),
            "centred_pairwise_cos": _mean_pairwise_cos(cls - cls.mean(0)),
            "mean_direction_share": float(((cls @ mean_dir) ** 2).sum()) / norm2,
            "top_dim": top,
            "top_dim_share": float((cls[:, top] ** 2).sum()) / norm2,
        },
        "tokens": {
            "top_dim_share": float((real[:, top] ** 2).sum() / (real**2).sum()),
            "within_sample_cos": sum(within) / len(within),
        },
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from kd_methods import build_method
    from kd_methods.base import SignalSpec
    from models import build_student
    from models.teacher import Teacher
    from orchestrator.train.trial import resolve_teacher
    from tasks import get_task

    data = args.data
    if args.hole_window:
        from tasks.hole_window import hole_window_data

        before, after = (int(x) for x in args.hole_window.split(","))
        data = str(hole_window_data(args.data, work / "data", before, after))
    task = get_task(args.task)
    examples = getattr(task.load_jsonl(Path(data) / args.task), args.split)[: args.samples]
    teacher = Teacher.load(resolve_teacher(args.teacher), task.num_labels).eval()
    ids = teacher.encode(examples, args.max_length)
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), teacher.pad_id)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    layers = tuple(range(teacher.shape.num_layers + 1))
    with torch.no_grad():
        signals = teacher.signals(input_ids, mask, SignalSpec(cls_layers=layers, token_layers=layers))
    student = build_student(args.student, task.num_labels, vocab_size=1000, max_length=args.max_length)
    pkd = sorted(set(build_method("pkd", student.shape, teacher.shape).teacher_layers))
    return {
        "teacher": args.teacher,
        "task": args.task,
        "split": args.split,
        "samples": len(examples),
        "max_length": args.max_length,
        "hole_window": args.hole_window,
        "student": args.student,
        "pkd_layers": pkd,
        "layers": {str(i): layer_summary(signals.cls[i], signals.tokens[i], mask) for i in layers},
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"teacher {results['teacher']} on {results['task']} {results['split']} ({results['samples']} inputs); "
        f"PKD reads layers {results['pkd_layers']} for {results['student']}"
    )
    print(
        "layer  [CLS] cos  centred  mean-dir share  top dim (share)  tokens: top-dim share  within-sample cos"
    )
    for layer, row in results["layers"].items():
        c, t = row["cls"], row["tokens"]
        print(
            f"{layer:>5}  {c['pairwise_cos']:9.4f}  {c['centred_pairwise_cos']:7.4f}  {c['mean_direction_share']:14.4f}"
            f"  {c['top_dim']:>7} ({c['top_dim_share']:.3f})  {t['top_dim_share']:21.3f}  {t['within_sample_cos']:17.3f}"
        )
