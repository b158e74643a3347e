"""Benchmarks. ``overhead``: what KD costs over plain fine-tuning, with the teacher cached vs run online.

    python -m orchestrator.bench overhead --out results.json            # CPU default, about 15 min on 2 cores
    python -m orchestrator.bench overhead --size paper --out paper.json # GPU: paper sizes

The same student (7M class) is trained on the same data for the same number of steps with FT, and with KD, DIST,
PKD and CKD both from the teacher cache and with the teacher (RoBERTa-base shape; random weights are fine for
timing) run online. Runs in-process, without Ray, so it can be measured on any machine with torch.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kd_methods import SignalSpec, get_method
from models.teacher import Teacher, create_random_teacher
from orchestrator.bench.sizes import OVERHEAD_SIZES, BenchSize
from orchestrator.cache.build import get_or_build
from orchestrator.cache.key import CacheRequest, human_bytes
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.online_teacher import OnlineTeacher
from orchestrator.train.trainer import TrainConfig, encode_split
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial, student_shape
from tasks import SPLITS, TaskData

KD_METHODS = ("kd", "dist", "pkd", "ckd")


SIZES = OVERHEAD_SIZES


def _device_name(device: str) -> str:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _subset(data: TaskData, n_train: int, n_eval: int) -> TaskData:
    return TaskData(data.train[:n_train], data.validation[:n_eval], data.test[:n_eval])


def _random_teacher(size: BenchSize, work: Path, full: PreparedTrial) -> Path:
    """A RoBERTa-base-shaped teacher with random weights (fine for timing), created once under ``work``."""
    teacher_dir = work / "teacher"
    if not (teacher_dir / "config.json").exists():
        texts = [ex.code for ex in full.task_data.train[:2000]]
        create_random_teacher(
            teacher_dir,
            arch="roberta",
            num_layers=size.teacher_layers,
            hidden_size=size.teacher_hidden,
            num_heads=size.teacher_heads,
            intermediate_size=size.teacher_ffn,
            tokenizer_texts=texts,
            vocab_size=size.teacher_vocab,
            num_labels=full.num_labels,
            max_length=size.max_length,
        )
    return teacher_dir


def build_shared_cache(
    task: str,
    teacher_dir: Path,
    tshape: Any,
    sshape: Any,
    max_length: int,
    prepared: PreparedTrial,
    work: Path,
    device: str,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> tuple[Any, float, dict[str, Any]]:
    """The teacher cache all four KD methods read, in one teacher pass: (build report, seconds, what each method
    reads as derived numbers: ``KDMethod.cache_needs``, e.g. CKD's Gram numbers). Shared by both benchmarks."""
    needs = {name: get_method(name)(sshape, tshape).cache_needs() for name in KD_METHODS}
    spec = SignalSpec(logits=True)
    for signals, _ in needs.values():
        spec = spec.union(signals)
    reads = {name: derived for name, (_, derived) in needs.items()}
    extra = {"batch_size": batch_size} if batch_size else {}
    derived = tuple(d for d in reads.values() if d is not None)
    request = CacheRequest(
        str(teacher_dir), task, spec, max_length, derived=derived, precision=precision, **extra
    )
    t0 = time.perf_counter()
    report = get_or_build(
        request, prepared.task_data, prepared.num_labels, work / "storage", use_ray=False, device=device
    )
    build_s = time.perf_counter() - t0
    print(
        f"teacher cache: {human_bytes(report.bytes)} built in {build_s:.1f} s ({'built' if report.built else 'found'})",
        flush=True,
    )
    return report, build_s, reads


def _time_methods(
    kd_methods: tuple[str, ...],
    timed: Callable[[str, Any], tuple[float, float]],
    cached: dict[str, CachedTeacher],
    online: OnlineTeacher,
) -> dict[str, dict[str, float]]:
    methods: dict[str, dict[str, float]] = {}
    for name in kd_methods:
        # FT is timed next to each method (the faster of two runs: the first also pays one-off warm-up), so
        # drift in the machine's speed during a long benchmark does not land in the ratios.
        ft_s = min(timed("ft", None)[0], timed("ft", None)[0])
        cached_s, teacher_s_cached = timed(name, cached[name])
        online_s, teacher_s_online = timed(name, online)
        methods[name] = {
            "ft_s": ft_s,
            "cached_s": cached_s,
            "online_s": online_s,
            "teacher_s_cached": teacher_s_cached,
            "teacher_s_online": teacher_s_online,
            "cached_over_ft": cached_s / ft_s,
            "online_over_ft": online_s / ft_s,
            "teacher_share_cached": teacher_s_cached / cached_s,
            "teacher_share_online": teacher_s_online / online_s,
        }
        print(f"{name}: FT {ft_s:.2f} s, cached {cached_s:.2f} s, online {online_s:.2f} s", flush=True)
    return methods


def overhead(
    size: BenchSize,
    data: str,
    work: Path,
    device: str = "auto",
    task: str = "exception",
    kd_methods: tuple[str, ...] = KD_METHODS,
    precision: str = "auto",
) -> dict[str, Any]:
    """Time FT vs cached vs online KD for every method; returns the results dict (see module docstring)."""
    n_train = size.steps * size.batch_size
    base = TrialConfig(
        task=task,
        student=size.student,
        method="ft",
        data=data,
        max_length=size.max_length,
        train=TrainConfig(
            epochs=1,
            batch_size=size.batch_size,
            max_steps=size.steps,
            device=device,
            eval_batch_size=size.batch_size,
            precision=precision,
        ),
        cache_dir=str(work / "cache"),
    )
    full = prepare(base)
    # Same data for every run: the first steps*batch training samples, small validation/test sets (not timed).
    task_data = _subset(full.task_data, n_train, size.batch_size)
    encoded = {
        s: encode_split(task_data.split(s), full.tokenizer.encode, size.max_length, full.tokenizer.pad_id)
        for s in SPLITS
    }
    prepared = PreparedTrial(task_data, full.tokenizer, encoded, full.num_labels)

    teacher_dir = _random_teacher(size, work, full)
    teacher = Teacher.load(str(teacher_dir), full.num_labels)
    tshape = teacher.shape
    sshape = student_shape(size.student)

    from orchestrator.train.trainer import resolve_device, resolve_precision

    resolved = resolve_precision(precision, resolve_device(device))
    report, build_s, reads = build_shared_cache(
        task, teacher_dir, tshape, sshape, size.max_length, prepared, work, device, size.batch_size, resolved
    )

    online = OnlineTeacher(
        teacher,
        {
            s: encode_split(task_data.split(s), teacher.encode, size.max_length, teacher.pad_id)
            for s in SPLITS
        },
        resolve_device(device),
    )
    cached = {name: CachedTeacher.open(report.path, reads=reads[name]) for name in KD_METHODS}

    def timed(method: str, source: Any) -> tuple[float, float]:
        cfg = TrialConfig(**{**vars(base), "method": method, "train": TrainConfig(**vars(base.train))})
        res = run_trial(cfg, teacher_source=source, teacher_shape=tshape, prepared=prepared)
        return res.train_seconds, res.teacher_seconds

    methods = _time_methods(kd_methods, timed, cached, online)
    return {
        "methods": methods,
        "teacher_passes": 1 if report.built else 0,
        "cache_bytes": report.bytes,
        "cache_build_s": build_s,
        "device": _device_name(device),
        "precision": resolved,
        "size": vars(size),
        "teacher_shape": vars(tshape),
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\ndevice: {results['device']}   cache: {human_bytes(results['cache_bytes'])} "
        f"(built once in {results['cache_build_s']:.1f} s, teacher passes: {results['teacher_passes']})"
    )
    head = (
        f"{'method':<7}{'FT s':>9}{'cached s':>10}{'online s':>10}{'cached/FT':>11}{'online/FT':>11}"
        f"{'teacher% cached':>17}{'teacher% online':>17}"
    )
    print(head)
    print("-" * len(head))
    for name, m in results["methods"].items():
        print(
            f"{name:<7}{m['ft_s']:>9.2f}{m['cached_s']:>10.2f}{m['online_s']:>10.2f}{m['cached_over_ft']:>11.3f}"
            f"{m['online_over_ft']:>11.3f}{100 * m['teacher_share_cached']:>16.1f}%"
            f"{100 * m['teacher_share_online']:>16.1f}%"
        )
