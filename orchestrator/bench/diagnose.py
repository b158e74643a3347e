"""The per-term loss diagnostic: how big each KD loss term is and how hard it pulls (docs/METHODS.md's figures).

    python -m orchestrator.bench diagnose --mode init --out init.json
    python -m orchestrator.bench diagnose --mode train --task exception --data data/local --hole-window 6,2 \\
        --teacher runs/transfer/teacher --student roberta-0.6m --method ckd --param beta=1 --param gamma=1 \\
        --lr 1e-3 --batch-size 32 --max-length 128 --steps 300 --every 50 --out ckd.json

Both use ``kd_methods.diagnostics.term_breakdown``: each weighted term's value and the L2 norm of the gradient it
alone induces on the student's (and the method's own) parameters, before clipping.

``--mode init`` ("Loss scales at the defaults"): every run configuration of docs/METHODS.md's table (``INIT_RUNS``, or
``--method`` with ``--param``s) on one batch at initialisation, no training. A randomly initialised student
(``--student``, default roberta-7m), train mode; batch 16 of random token ids, lengths 40..128 (128 max), 2 classes;
as the teacher a random 12-layer, 256-wide RoBERTa for the hidden states (token and [CLS]); teacher logits with a
margin ``m`` (``--margins``), right on 65% of the samples (logit difference m between the two classes).

``--mode train`` ("Why KD, PKD and CKD collapsed"): the trainer's own loop (``orchestrator.train.trainer.train``:
AdamW, linear warm-up and decay, clipping at 1.0) with the method wrapped, so that at step 0 and every ``--every``
steps the breakdown is taken on that step's batch, with the number of distinct predictions in the batch, the
accuracy over its labelled samples, the agreement with the teacher's predictions, the same spread over the whole
validation split, and for PKD ``feature_alignment`` (how alike the batch's vectors are on each side of the feature
term; ``record``). The teacher is a fine-tuned folder (``python -m orchestrator.finetune_teacher``, or the one
``python -m orchestrator.bench transfer --work DIR`` leaves in ``DIR/teacher``) read through the teacher cache, as
in a study. ``--hole-window B,A`` cuts exception functions as the transfer check does (``tasks/hole_window.py``), so
the transfer check's teacher reads the data it was trained on. At the end, the run's validation history and test
metrics (the best epoch's), as ``orchestrator.trial`` reports them.

Runs in-process (no Ray, no MLflow). The argument parser is built without importing torch (fast ``--help``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.bench.diagnose_signals import feature_alignment, prediction_spread
from orchestrator.cli_help import HelpFormatter
from orchestrator.core.errors import StudyError

# docs/METHODS.md's "Loss scales at the defaults": (row label, method, params).
INIT_RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("FT", "ft", {}),
    ("KD T 10 (default, no T^2)", "kd", {}),
    ("KD T 10 with T^2", "kd", {"t_squared": True}),
    ("KD T 1", "kd", {"temperature": 1.0}),
    ("DIST (T 1)", "dist", {}),
    ("PKD (mean over layers)", "pkd", {}),
    ("PKD, old sum (= beta 30)", "pkd", {"beta": 30.0}),
    ("CKD defaults (beta = gamma = 10)", "ckd", {}),
    ("CKD, authors' README (beta = gamma = 1)", "ckd", {"beta": 1.0, "gamma": 1.0}),
)
INIT_BATCH, INIT_RIGHT = (
    16,
    0.65,
)  # lengths: 40..128 at --max-length 128 (the shortest is 5/16 of the longest)


def add_parser(sub: Any) -> None:
    """The ``diagnose`` subcommand of ``python -m orchestrator.bench``."""
    d = sub.add_parser(
        "diagnose",
        help="each KD loss term's value and gradient norm, at initialisation or every N training steps",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    d.add_argument("--mode", choices=["init", "train"], default="train")
    d.add_argument("--out", default="diagnose.json")
    d.add_argument("--student", help="default: roberta-7m (init), roberta-0.6m (train)")
    d.add_argument("--method", help="ft, kd, dist, pkd or ckd (init: default every row of INIT_RUNS)")
    d.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a method hyperparameter"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu")
    d.add_argument("--margins", default="1,4", help="init: teacher logit margins, comma-separated")
    d.add_argument("--task", default="exception")
    d.add_argument(
        "--data", default="data/local", help="train: a folder of JSON Lines (one sub-folder per task)"
    )
    d.add_argument(
        "--hole-window", help="train: B,A: cut exception functions to B lines above the hole, A below"
    )
    d.add_argument("--teacher", help="train: a fine-tuned teacher folder")
    d.add_argument(
        "--labelled",
        type=int,
        help="train: labels on only N seeded training samples (tasks/labels.py), the rest unlabelled: the "
        "transfer check's transfer-set arm (its label terms on the labelled samples only)",
    )
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument(
        "--steps", type=int, help="train: stop after this many optimiser steps (default: all epochs)"
    )
    d.add_argument("--every", type=int, default=50, help="train: a breakdown every N steps (and at step 0)")
    d.add_argument("--max-length", type=int, default=128)
    d.add_argument("--max-samples", type=int, help="train: cap every split at N samples")
    d.add_argument("--work", help="folder for the cut data, tokenizers and cache (default: a temporary one)")


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StudyError(f"--param expects KEY=VALUE, got '{pair}'")  # the user's: one line
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The results dict ``print_table`` shows and the command writes."""
    params = _params(args.param)
    if args.mode == "init":
        runs = ((args.method, args.method, params),) if args.method else INIT_RUNS
        margins = tuple(float(m) for m in args.margins.split(",") if m.strip())
        student = args.student or "roberta-7m"
        return at_init(student, runs, margins, args.seed, args.device, work, args.max_length)
    if not args.teacher and args.method not in (None, "ft"):
        raise StudyError("--mode train with a KD method needs --teacher (a fine-tuned teacher folder)")
    return during_training(args, params, work)


def _student_batch(vocab: int, length: int, seed: int) -> tuple[Any, Any, Any]:
    """Random token ids (not the special ones), random lengths, random binary labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length * 5 // 16, length + 1, (INIT_BATCH,), generator=g)
    lengths[0] = length  # the batch is padded to the longest
    ids = torch.randint(5, vocab, (INIT_BATCH, length), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids[:, 0] = 0  # <s>
    ids = ids.masked_fill(mask == 0, 1)  # <pad>
    labels = torch.randint(0, 2, (INIT_BATCH,), generator=g)
    return ids, mask, labels


def _margin_logits(labels: Any, margin: float, seed: int) -> Any:
    """Two-class teacher logits whose difference is ``margin``, for the true class on INIT_RIGHT of the samples."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    right = torch.rand(len(labels), generator=g) < INIT_RIGHT
    picked = torch.where(right, labels, 1 - labels)
    logits = torch.full((len(labels), 2), -margin / 2)
    logits[torch.arange(len(labels)), picked] = margin / 2
    return logits


def at_init(
    student: str,
    runs: Any,
    margins: tuple[float, ...],
    seed: int,
    device: str,
    work: Path,
    length: int = 128,
) -> dict[str, Any]:
    """One ``term_breakdown`` per (run, margin) on one batch, at initialisation."""
    import torch

    from kd_methods import build_method, get_method
    from kd_methods.diagnostics import term_breakdown
    from models import build_student, get_student_spec
    from models.teacher import Teacher, create_random_teacher

    vocab = get_student_spec(student).vocab_size
    ids, mask, labels = _student_batch(vocab, length, seed)
    folder = create_random_teacher(work / "random-teacher", "roberta", 12, 256, 4, 1024, seed=seed)
    teacher = Teacher.load(str(folder), 2).eval()
    t_ids = ids.clamp(max=teacher.model.config.vocab_size - 1)
    rows = []
    for label, name, params in runs:
        for margin in margins:
            torch.manual_seed(seed)  # the same student weights for every row
            model = build_student(student, 2, max_length=length).to(device).train()
            method = build_method(name, model.shape, teacher.shape, **params).to(device).train()
            signals = None
            if get_method(name).family != "none":
                with torch.no_grad():
                    signals = teacher.signals(t_ids, mask, method.signals())
                signals.logits = _margin_logits(labels, margin, seed)
                signals = signals.to(device)
            out = model(ids.to(device), mask.to(device))
            terms = term_breakdown(method, model, out, signals, labels.to(device))
            rows.append({"run": label, "method": name, "params": params, "margin": margin, "terms": terms})
    return {
        "mode": "init",
        "student": student,
        "teacher": "random RoBERTa 12 x 256 (states), margin logits",
        "batch": INIT_BATCH,
        "lengths": [int(mask.sum(1).min()), length],
        "teacher_right": INIT_RIGHT,
        "seed": seed,
        "device": device,
        "rows": rows,
    }


def record(method: Any, model: Any, every: int, validation: Any = None) -> list[dict[str, Any]]:
    """Wrap ``method.loss`` (the call the trainer makes every step): at step 0 and every ``every`` steps, the
    breakdown of that step's batch, its prediction spread (``prediction_spread``; ``batch_accuracy`` over its labelled
    samples), the share of it where the student's prediction is the teacher's (``teacher_agreement``, when the
    method reads teacher logits) and, with ``validation`` (an ``EncodedSplit``), the same spread on the whole
    validation split (``val``). Appended to the returned list. The validation pass runs in eval mode and draws
    no random numbers, so the watched run trains exactly as an unwatched one."""
    import torch

    from kd_methods.diagnostics import term_breakdown
    from orchestrator.train.trainer import predict

    rows: list[dict[str, Any]] = []
    step = [0]
    loss = method.loss

    def recorded(student: Any, teacher: Any, labels: Any) -> Any:
        if step[0] % every == 0:
            preds = student.logits.detach().argmax(-1)
            spread = prediction_spread(preds, labels)
            row: dict[str, Any] = {
                "step": step[0],
                "terms": term_breakdown(method, model, student, teacher, labels),
                "classes": spread["classes"],
                "top_share": spread["top_share"],
                "batch_accuracy": spread["accuracy"],
                "batch_labelled": spread["labelled"],
            }
            if teacher is not None and teacher.logits is not None:
                agree = preds == teacher.logits.detach().argmax(-1)
                row["teacher_agreement"] = float(agree.float().mean())
            alignment = feature_alignment(method, student, teacher)
            if alignment is not None:
                row["feature_alignment"] = alignment
            if validation is not None:
                device = student.logits.device
                logits, _ = predict(model, validation, 64, device)
                row["val"] = prediction_spread(
                    torch.from_numpy(logits).argmax(-1), torch.as_tensor(validation.labels)
                )
                model.train()  # predict() left eval mode; the step being recorded continues in train mode
            rows.append(row)
        step[0] += 1
        return loss(student, teacher, labels)

    method.loss = (
        recorded  # an instance attribute: the module, its parameters and loss_terms stay as they are
    )
    return rows


def during_training(args: argparse.Namespace, params: dict[str, Any], work: Path) -> dict[str, Any]:
    """The trainer's loop with ``method.loss`` wrapped by ``record``; returns the breakdowns and the run's scores."""
    from kd_methods import build_method, get_method
    from models import build_student
    from orchestrator.train.trainer import TrainConfig, seed_everything, train
    from orchestrator.train.trial import TrialConfig, cached_teacher, prepare
    from tasks import get_task

    data = args.data
    if args.hole_window:
        from tasks.hole_window import hole_window_data

        before, after = (int(x) for x in args.hole_window.split(","))
        data = str(hole_window_data(args.data, work / "data", before, after))
    method_name = args.method or "ft"
    student_name = args.student or "roberta-0.6m"
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        max_steps=args.steps,
    )
    cfg = TrialConfig(
        task=args.task,
        student=student_name,
        method=method_name,
        teacher=args.teacher,
        seed=args.seed,
        data=data,
        max_length=args.max_length,
        max_samples=args.max_samples,
        method_params=params,
        train=train_cfg,
        teacher_mode="cached",
        cache_dir=str(work / "cache"),
    )
    prepared = prepare(cfg)
    if args.labelled:  # the transfer check's transfer-set arm: the same seeded labelled part, the rest -100
        from tasks.labels import LabelSpec, labelled_indices, mask_split

        train_split = prepared.encoded["train"]
        keep = labelled_indices(train_split.labels, LabelSpec(count=args.labelled), args.task)
        prepared.encoded["train"] = mask_split(train_split, keep)
    source, shape = (None, None)
    if get_method(method_name).family != "none":
        source, shape = cached_teacher(cfg, prepared)
        source.check_data(prepared.task_data.fingerprint())
    seed_everything(cfg.seed)  # as run_trial: the weights depend on the seed alone
    model = build_student(
        student_name,
        prepared.num_labels,
        vocab_size=prepared.tokenizer.vocab_size,
        max_length=args.max_length,
    )
    method = build_method(method_name, model.shape, shape, **params)
    rows = record(method, model, args.every, prepared.encoded["validation"])
    result = train(model, method, prepared.encoded, get_task(args.task), train_cfg, source)
    return {
        "mode": "train",
        "task": args.task,
        "student": student_name,
        "method": method_name,
        "params": params,
        "labelled": args.labelled or "all",
        "teacher": args.teacher,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "steps": result.steps,
        "seed": args.seed,
        "device": args.device,
        "rows": rows,
        "history": result.history,
        "test": result.test,
    }


def _terms(terms: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{k} {v['value']:.4g} / {v['grad_norm']:.3g}" for k, v in terms.items() if k != "total")


def print_table(r: dict[str, Any]) -> None:
    """One line per breakdown: the terms as value / grad norm (and, in training, classes and batch accuracy)."""
    if r["mode"] == "init":
        print(
            f"\nat initialisation: student {r['student']}, {r['teacher']}, batch {r['batch']}, seed {r['seed']}"
        )
        for row in r["rows"]:
            print(f"{row['run']:<42} m {row['margin']:g}: {_terms(row['terms'])}")
        return
    print(
        f"\n{r['method']} {r['params']} on {r['task']}: student {r['student']}, lr {r['lr']}, batch {r['batch_size']},"
        f" {r['steps']} steps, seed {r['seed']}; term: value / grad norm"
    )
    for row in r["rows"]:
        acc = "-" if row["batch_accuracy"] is None else f"{row['batch_accuracy']:.2f}"
        val = row.get("val")
        seen = f"; val {val['classes']} classes, acc {val['accuracy']:.3f}" if val else ""
        agree = f", agrees with teacher {row['teacher_agreement']:.2f}" if "teacher_agreement" in row else ""
        print(
            f"step {row['step']:>5}: batch {row['classes']} classes, acc {acc}{agree}{seen}; {_terms(row['terms'])}"
        )
    test = ", ".join(f"{k} {v:.4f}" for k, v in r["test"].items())
    print(f"test (best epoch): {test}")


def main_for_tests(argv: list[str]) -> dict[str, Any]:
    """Parse ``argv`` as the subcommand does and run it in a temporary work folder (tests)."""
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="bench"))
    args = p.parse_args(["diagnose", *argv])
    with tempfile.TemporaryDirectory(prefix="kddiag-") as tmp:
        return run(args, Path(tmp))
