"""Trials per hour when several trials share one device: ``python -m orchestrator.bench packing``.

For each count k (1, 2, 4, 8) it starts k processes at once, each fine-tuning the same small student on the same
real data (FT, the cheapest trial: the upper bound of what packing gains), and measures the wall time from a common
start until the last one finishes: trials per hour = k * 3600 / wall. On a GPU every process uses the one device
(what Tune's fractional GPUs do, ``trials_per_gpu``); on a CPU the machine's cores are the budget, split evenly
(``torch.set_num_threads(cores // k)``, at least 1). Before a round on a GPU the memory check of
``sweep/packing.py`` runs; a round that would not fit is skipped with the reason.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from orchestrator.bench.sizes import PACKING_SIZES, PackingSize

SIZES = PACKING_SIZES


def _worker(
    spec: dict[str, Any], data: dict[str, Any], threads: int, barrier: Any, results: Any, rank: int
) -> None:
    """One trial in its own process: build the student, wait for the others, train, report seconds and steps."""
    import torch

    from kd_methods import build_method
    from models import build_student
    from orchestrator.train.trainer import TrainConfig, train
    from tasks import get_task

    torch.set_num_threads(threads)
    cfg = TrainConfig(**spec["train"])
    torch.manual_seed(rank)
    model = build_student(
        spec["student"], data["num_labels"], vocab_size=data["vocab"], max_length=spec["max_length"]
    )
    method = build_method("ft", model.shape)
    # One forward and backward before the common start: one-off costs (allocations, kernel selection) are not
    # what packing changes. ``train`` reseeds, so this does not change what it trains.
    # Under the autocast the timed run uses, so bf16 kernels' first-call costs stay out of the timed window too.
    from orchestrator.core.device import resolve_device, resolve_precision
    from orchestrator.train.trainer import autocast

    dev = resolve_device(cfg.device)
    ids, mask, _ = data["encoded"]["train"].batch(torch.arange(min(cfg.batch_size, 2)), dev)
    with autocast(dev, resolve_precision(cfg.precision, dev)):
        loss = model.to(dev)(ids, mask).logits.float().sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    barrier.wait()
    start = time.perf_counter()
    result = train(model, method, data["encoded"], get_task(data["task"]), cfg)
    results.put(
        {
            "rank": rank,
            "seconds": time.perf_counter() - start,
            "train_seconds": result.train_seconds,
            "steps": result.steps,
            "precision": result.precision,
        }
    )


def _round(
    k: int, spec: dict[str, Any], data: dict[str, Any], threads: int, timeout: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a fresh interpreter per trial, like a Tune worker (and safe with CUDA)
    barrier, results = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(spec, data, threads, barrier, results, r)) for r in range(k)]
    for p in procs:
        p.start()
    barrier.wait(timeout=timeout)
    start = time.perf_counter()
    rows = [results.get(timeout=timeout) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join(timeout=60)
    steps = sum(r["steps"] for r in rows)
    return {
        "trials": k,
        "threads_per_trial": threads,
        "wall_s": wall,
        "trials_per_hour": k * 3600 / wall,
        "mean_trial_s": sum(r["seconds"] for r in rows) / k,
        "step_ms": 1000 * sum(r["train_seconds"] for r in rows) / max(steps, 1),
        "precision": rows[0]["precision"],
    }


def _payload(size: PackingSize, data: str, work: Path, task: str, train: Any) -> dict[str, Any]:
    """The data every trial of a round trains on: the first ``steps * batch`` training samples, encoded once."""
    from orchestrator.train.trainer import EncodedSplit
    from orchestrator.train.trial import TrialConfig, prepare

    cfg = TrialConfig(
        task=task,
        student=size.student,
        method="ft",
        data=data,
        max_length=size.max_length,
        train=train,
        cache_dir=str(work / "cache"),
    )
    prepared = prepare(cfg)

    def head(split: EncodedSplit, n: int) -> EncodedSplit:
        return EncodedSplit(split.input_ids[:n], split.labels[:n], split.pad_id)

    enc = prepared.encoded
    return {
        "task": task,
        "num_labels": prepared.num_labels,
        "vocab": prepared.tokenizer.vocab_size,
        "encoded": {
            "train": head(enc["train"], size.steps * size.batch_size),
            "validation": head(enc["validation"], size.batch_size),
            "test": head(enc["test"], size.batch_size),
        },
    }


def _estimate(size: PackingSize, num_labels: int, precision: str) -> tuple[int, Any]:
    """(parameter count, the memory estimate of one trial) for the packing check."""
    import torch

    from models import build_student, count_parameters
    from orchestrator.design.packing import TrialMemory, trial_bytes
    from orchestrator.train.trial import student_shape

    shape = student_shape(size.student)
    with torch.device("meta"):
        params = count_parameters(build_student(size.student, num_labels))
    est = trial_bytes(
        params, shape.hidden_size, shape.num_layers, size.batch_size, size.max_length, precision
    )
    return params, TrialMemory(size.student, est)


def packing(
    size: PackingSize,
    data: str,
    work: Path,
    device: str = "auto",
    precision: str = "auto",
    task: str = "exception",
    counts: tuple[int, ...] | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Measure every count of ``counts`` (default: the size's); returns the JSON the command writes."""
    from orchestrator.bench.overhead import _device_name
    from orchestrator.core.device import device_memory
    from orchestrator.design.packing import check_packing
    from orchestrator.train.config import TrainConfig
    from orchestrator.train.trainer import resolve_device, resolve_precision

    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)
    train = TrainConfig(
        epochs=1,
        batch_size=size.batch_size,
        eval_batch_size=size.batch_size,
        max_steps=size.steps,
        device=str(dev),
        precision=resolved,
    )
    payload = _payload(size, data, work, task, train)
    spec = {"student": size.student, "max_length": size.max_length, "train": vars(train)}
    cores = os.cpu_count() or 1
    params, one = _estimate(size, payload["num_labels"], resolved)
    rounds = []
    for k in counts or size.counts:
        threads = max(1, cores // k)  # the machine's cores are the budget, split between the round's trials
        if dev.type == "cuda":
            try:
                check_packing(k, [one], device_memory())
            except ValueError as err:
                rounds.append({"trials": k, "skipped": str(err)})
                continue
        row = _round(k, spec, payload, threads, timeout)
        print(
            f"{k} trial(s) at once: {row['trials_per_hour']:.0f} trials/h (wall {row['wall_s']:.1f} s, "
            f"{row['step_ms']:.1f} ms/step)",
            flush=True,
        )
        rounds.append(row)
    base = next((r["trials_per_hour"] for r in rounds if r.get("trials") == 1 and "skipped" not in r), None)
    for r in rounds:
        if base and "trials_per_hour" in r:
            r["speedup_vs_1"] = r["trials_per_hour"] / base
    return {
        "device": _device_name(device),
        "precision": resolved,
        "cores": cores,
        "size": {**vars(size), "counts": list(counts or size.counts)},
        "student_params": params,
        "estimated_trial_gib": one.bytes / 1024**3,
        "rounds": rounds,
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\ndevice: {results['device']}   precision: {results['precision']}   cores: {results['cores']}")
    print(f"{'trials':>7}{'threads':>9}{'wall s':>9}{'trials/h':>10}{'x vs 1':>8}{'ms/step':>9}")
    for r in results["rounds"]:
        if "skipped" in r:
            print(f"{r['trials']:>7}  skipped: {r['skipped']}")
            continue
        print(
            f"{r['trials']:>7}{r['threads_per_trial']:>9}{r['wall_s']:>9.1f}{r['trials_per_hour']:>10.0f}"
            f"{r.get('speedup_vs_1', float('nan')):>8.2f}{r['step_ms']:>9.1f}"
        )
