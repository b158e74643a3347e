"""The transfer check's design measurements: what its sizes were fixed from, before any run of the check.

    python -m orchestrator.bench transfer-design --size cpu --labelled 250,500,1000 --out design.json
    python -m orchestrator.bench transfer-design --size cpu --task clone --data data/local --labelled 500,2000

Nothing here trains a KD method to the end or compares one with FT. For each labelled count N it measures what the
check's gate presupposes: how good the teacher is when fine-tuned on N labels (validation and test), and whether
FT's students on the same N labels rise above the majority baseline (FT's candidates on the first seed, as in the
check's search). At the size's own labelled count it then times one teacher pass over every training input (the
cache), reads how often the teacher is right on the unlabelled inputs it will label, and times a few optimiser
steps of every method, from which it projects the check's run time.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bench.overhead import _device_name
from orchestrator.bench.sizes import TRANSFER_SIZES, TransferSize
from orchestrator.bench.transfer import search
from orchestrator.bench.transfer_report import KD_METHODS, headline
from orchestrator.bench.transfer_runner import TransferRunner
from tasks import get_task

SIZES = TRANSFER_SIZES
TIMED_STEPS = 60
PARALLEL_STEPS = 200


def _log(msg: str) -> None:
    print(f"[transfer-design {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _for_task(size: TransferSize, task: str | None) -> TransferSize:
    if not task or task == size.task:
        return size
    window = size.hole_window if task == "exception" else None
    return dataclasses.replace(size, task=task, hole_window=window, min_train=0)


def one_count(runner: TransferRunner, data: str, teacher: str, count: int) -> dict[str, Any]:
    """Teacher and FT (its candidates, first seed) on ``count`` labels: validation and test, and FT's baseline."""
    size = runner.size
    runner.relabel({"count": count})
    t0, c0 = time.perf_counter(), time.process_time()
    teacher_dir, tuned = runner.finetune(data, teacher)
    teacher_s, teacher_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    _, best, tried = search(runner, "ft", "transfer")
    ft_s, ft_cpu = time.perf_counter() - t0, time.process_time() - c0
    task = get_task(size.task)
    val_base = float(task.majority_baseline([ex.label for ex in runner.prepared.task_data.validation]))
    teacher_val = headline(size.task, tuned, "validation")
    ft_val = headline(size.task, best, "validation")
    row = {
        "labelled": count,
        "teacher": {
            "val": teacher_val,
            "test": headline(size.task, tuned),
            "seconds": teacher_s,
            "cpu_s": teacher_cpu,
        },
        "ft": {
            "val": ft_val,
            "test": headline(size.task, best),
            "candidates": tried,
            "val_majority_baseline": val_base,
            "above_baseline": ft_val > val_base + 0.005,
            "seconds": ft_s,
            "cpu_s": ft_cpu,
        },
        "advantage_val": teacher_val - ft_val,
        "teacher_dir": str(teacher_dir),
    }
    _log(
        f"N={count}: teacher val {teacher_val:.4f} test {row['teacher']['test']:.4f}; FT val {ft_val:.4f} "
        f"(baseline {val_base:.4f}); advantage {row['advantage_val']:+.4f}"
    )
    return row


def teacher_timing(runner: TransferRunner, data: str, teacher: str) -> tuple[Path, float]:
    """The pretrained teacher (new head) as saved for a cache, and the size's teacher fine-tune time projected
    from a few timed steps and one validation pass."""
    import math

    from orchestrator.train.finetune import finetune_teacher
    from orchestrator.train.trainer import TrainConfig

    size = runner.size
    cfg = TrainConfig(
        epochs=1,
        batch_size=size.teacher_batch_size,
        lr=size.teacher_lr,
        device=runner.device,
        max_steps=TIMED_STEPS,
    )
    folder = runner.work / "teacher-timing"
    res = finetune_teacher(teacher, size.task, folder, data, cfg, size.max_length, size.max_samples).result
    step_s = res.train_seconds / max(res.steps, 1)
    steps = size.teacher_epochs * math.ceil(len(runner.keep) / size.teacher_batch_size)
    projected = steps * step_s + size.teacher_epochs * res.eval_seconds
    _log(
        f"teacher: {step_s:.2f} s per step, {res.eval_seconds:.1f} s per validation pass: {projected:.0f} s projected"
    )
    return folder, projected


def timing(runner: TransferRunner, teacher_dir: Path, data: str) -> dict[str, Any]:
    """The cache's teacher pass, the teacher's accuracy on the unlabelled inputs, and seconds per step per method."""
    cpu0 = time.process_time()
    cache_s = runner.open_cache(Path(teacher_dir))
    cache_cpu_s = time.process_time() - cpu0
    logits = runner.sources["kd"].predictions("train")
    labels = np.asarray([ex.label for ex in runner.prepared.task_data.train])
    unlabelled = np.setdiff1d(np.arange(runner.n_all), runner.keep)
    right = logits.argmax(-1) == labels
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out: dict[str, Any] = {
        "cache_s": cache_s,
        "cache_cpu_s": cache_cpu_s,
        "cache_samples_per_s": sum(len(s) for s in runner.prepared.encoded.values()) / max(cache_s, 1e-9),
        "teacher_on_unlabelled_inputs": {
            "accuracy": float(right[unlabelled].mean()),
            "mean_top_probability": float(probs[unlabelled].max(-1).mean()),
        },
        "step_s": {},
    }
    out["step_cpu_s"] = {}
    for method in ("ft", *KD_METHODS):
        params = dict(runner.size.candidates[method][0])
        cpu0 = time.process_time()
        res = runner.run(method, params, 0, "transfer", steps=min(TIMED_STEPS, 2 * runner.size.steps))
        out["step_s"][method] = res.train_seconds / max(res.steps, 1)
        # CPU seconds per step (training and evaluation), all threads: on a busy shared machine wall time
        # overstates what the same work takes alone; this does not
        out["step_cpu_s"][method] = (time.process_time() - cpu0) / max(res.steps, 1)
        _log(
            f"{method}: {1000 * out['step_s'][method]:.1f} ms per step "
            f"({1000 * out['step_cpu_s'][method]:.1f} ms of CPU time per step, evaluation included)"
        )
    if runner.size.workers > 1:
        out["parallel"] = parallel(runner, data)
    return out


def parallel(runner: TransferRunner, data: str) -> dict[str, Any]:
    """``workers`` KD runs at once (one process each), twice: the first wave starts the workers, the second is
    timed. Returns the aggregate optimiser steps per second over all workers."""
    from orchestrator.bench.transfer_pool import Pool

    size = runner.size
    job = ("kd", dict(size.candidates["kd"][0]), 0, "transfer", PARALLEL_STEPS)
    with Pool(runner, data, size.workers) as pool:
        pool.map([job] * size.workers)
        t0 = time.perf_counter()
        done = pool.map([job] * size.workers)
        wall = time.perf_counter() - t0
    steps = sum(r["steps"] for r in done)
    _log(f"{size.workers} workers: {steps / wall:.0f} steps/s together ({wall:.1f} s for {steps} steps)")
    return {"workers": size.workers, "wall_s": wall, "steps": steps, "steps_per_s": steps / wall}


def projected_minutes(size: TransferSize, t: dict[str, Any], teacher_s: float) -> float:
    """The check's run time from the measured pieces: every run of every arm at the size's steps (with workers:
    all steps at the measured aggregate rate)."""
    per_method = len(size.candidates["ft"]) + len(size.seeds) - 1  # searched: candidates + the other seeds
    step = t["step_s"]
    kd = sum(step[m] for m in KD_METHODS)
    runs_s = size.steps * (per_method * step["ft"] + 2 * per_method * kd + len(size.seeds) * kd)
    if "parallel" in t:
        runs = per_method * 9 + len(size.seeds) * 4
        runs_s = runs * size.steps / t["parallel"]["steps_per_s"]
    return (runs_s + teacher_s + t["cache_s"]) / 60


def design(
    size: TransferSize,
    data: str,
    work: Path,
    counts: list[int],
    device: str = "auto",
    teacher: str = "minilm",
    task: str | None = None,
    timing_only: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    size = _for_task(size, task)
    if size.hole_window is not None:
        from tasks.hole_window import hole_window_data

        data = str(hole_window_data(data, work / "data", *size.hole_window))
    runner = TransferRunner(size, data, work, device)
    if timing_only:  # the pretrained teacher with a new head: the same shapes, so the same costs
        rows: list[dict[str, Any]] = []
        teacher_dir, teacher_s = teacher_timing(runner, data, teacher)
    else:
        rows = [one_count(runner, data, teacher, n) for n in counts]
        own = int(size.labelled["count"]) if "count" in size.labelled else None
        pick = next((r for r in rows if r["labelled"] == own), rows[-1])
        runner.relabel({"count": pick["labelled"]})
        teacher_dir, teacher_s = Path(pick["teacher_dir"]), pick["teacher"]["seconds"]
    t = timing(runner, teacher_dir, data)
    t["labelled"] = len(runner.keep)
    t["teacher_finetune_s"] = teacher_s
    return {
        "task": size.task,
        "student": size.student,
        "max_length": size.max_length,
        "train_inputs": runner.n_all,
        "counts": rows,
        "timing": t,
        "projected_check_minutes": projected_minutes(size, t, teacher_s),
        "size": {k: v for k, v in vars(size).items() if k != "candidates"},
        "device": _device_name(device),
        "seconds": time.perf_counter() - started,
    }


def print_table(r: dict[str, Any]) -> None:
    print(
        f"\ntask {r['task']}, {r['train_inputs']} training inputs, student {r['student']}, device {r['device']}"
    )
    print(
        f"{'labelled':>9}{'teacher val':>13}{'teacher test':>14}{'FT val':>9}{'FT baseline':>13}{'advantage':>11}"
    )
    for row in r["counts"]:
        print(
            f"{row['labelled']:>9}{row['teacher']['val']:>13.4f}{row['teacher']['test']:>14.4f}{row['ft']['val']:>9.4f}"
            f"{row['ft']['val_majority_baseline']:>13.4f}{row['advantage_val']:>+11.4f}"
        )
    t = r["timing"]
    u = t["teacher_on_unlabelled_inputs"]
    tuned = (
        f"right on {u['accuracy']:.1%} of the unlabelled inputs"
        if r["counts"]
        else "not fine-tuned (timing only)"
    )
    print(
        f"at N={t['labelled']}: teacher fine-tune {t['teacher_finetune_s']:.0f} s, teacher pass {t['cache_s']:.1f} s; "
        f"teacher {tuned}; ms per step: " + ", ".join(f"{m} {1000 * s:.1f}" for m, s in t["step_s"].items())
    )
    if "parallel" in t:
        p = t["parallel"]
        print(f"{p['workers']} workers at once: {p['steps_per_s']:.0f} optimiser steps per second together")
    print(f"projected check: {r['projected_check_minutes']:.1f} min   (this run {r['seconds'] / 60:.1f} min)")
