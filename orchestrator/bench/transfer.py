"""The knowledge-transfer check: does each KD method pass on a real teacher's advantage to its student?

    python -m orchestrator.bench transfer --out transfer.json              # 2 CPU cores, under 40 min
    python -m orchestrator.bench transfer --size gpu --out transfer.json   # a GPU, the paper's lengths

A controlled experiment. A real pretrained teacher (the offline all-MiniLM-L6-v2, or any hub id with ``--teacher``)
is fine-tuned on the task; plain fine-tuning (FT) of the student and each of KD, DIST, PKD and CKD are given the
same small search on validation (seed 0, the same number of candidates each, FT included), and each method's best
candidate then runs on every seed. Scores are the task's headline metric on test (0-1), paired by seed with FT's.
The teacher is checked to beat the best FT student on validation by at least ``min_advantage``; the JSON says
whether it did. Nothing here is tuned to make the check pass: the candidates are fixed per size, and a method that
does not transfer is reported as such.

Runs in-process without Ray or MLflow (like ``overhead``), so it runs on a lent GPU machine as it is.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bench.overhead import _device_name, build_shared_cache
from orchestrator.bench.sizes import TRANSFER_SIZES, TransferSize
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.finetune import finetune_teacher
from orchestrator.train.trainer import EncodedSplit, TrainConfig, TrainResult
from orchestrator.train.trial import TrialConfig, prepare, run_trial, student_shape
from tasks import get_task
from tasks.base import DEGENERATE_MARGIN

KD_METHODS = ("kd", "dist", "pkd", "ckd")


SIZES = TRANSFER_SIZES


def headline(task: str, result: TrainResult, split: str = "test") -> float:
    """The task's headline metric of a trained run on test, or on validation at its best epoch."""
    metrics = result.test if split == "test" else result.best_val
    return float(metrics[get_task(task).headline_metric])


def paired_stats(method: list[float], ft: list[float]) -> dict[str, Any]:
    """Mean of the seed-paired differences, its 95% t interval and the paired t-test's two-sided p-value."""
    from scipy import stats

    diff = np.asarray(method, dtype=float) - np.asarray(ft, dtype=float)
    n = len(diff)
    mean = float(diff.mean())
    if n < 2:
        return {"mean_delta": mean, "ci95": [math.nan, math.nan], "p_value": math.nan}
    sd = float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(method, ft).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    return {"mean_delta": mean, "ci95": [mean - half, mean + half], "p_value": p}


class _Runner:
    """Trains students on one prepared dataset, from one teacher cache."""

    def __init__(self, size: TransferSize, data: str, work: Path, device: str) -> None:
        self.size, self.data, self.work, self.device = size, data, work, device
        self.base = TrialConfig(
            task=size.task,
            student=size.student,
            method="ft",
            data=data,
            max_length=size.max_length,
            max_samples=size.max_samples,
            cache_dir=str(work / "cache"),
        )
        self.prepared = prepare(self.base)
        if size.student_train_samples is not None:
            # Students train on the first N samples; indices still name the same samples as in the cache.
            train = self.prepared.encoded["train"]
            n = min(size.student_train_samples, len(train))
            self.prepared.encoded["train"] = EncodedSplit(train.input_ids[:n], train.labels[:n], train.pad_id)
        self.sources: dict[str, Any] = {}
        self.teacher_shape: Any = None

    def run(self, method: str, params: dict[str, Any], seed: int) -> TrainResult:
        params = dict(params)
        lr = float(params.pop("lr"))
        train = TrainConfig(
            epochs=self.size.student_epochs, batch_size=self.size.batch_size, lr=lr, device=self.device
        )
        cfg = TrialConfig(
            **{**vars(self.base), "method": method, "seed": seed, "method_params": params, "train": train}
        )
        source = self.sources.get(method) if method != "ft" else None
        return run_trial(cfg, teacher_source=source, teacher_shape=self.teacher_shape, prepared=self.prepared)

    def open_cache(self, teacher_dir: Path) -> float:
        """One teacher pass for every method's signals; returns its seconds."""
        from models.teacher import Teacher

        teacher = Teacher.load(str(teacher_dir), self.prepared.num_labels)
        tshape = teacher.shape
        del teacher
        report, seconds, reads = build_shared_cache(
            self.size.task,
            teacher_dir,
            tshape,
            student_shape(self.size.student),
            self.size.max_length,
            self.prepared,
            self.work,
            self.device,
        )
        self.sources = {name: CachedTeacher.open(report.path, reads=d) for name, d in reads.items()}
        self.teacher_shape = tshape
        return seconds


def _log(msg: str) -> None:
    print(f"[transfer {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _search(
    runner: _Runner, method: str, size: TransferSize
) -> tuple[dict[str, Any], TrainResult, list[dict]]:
    """Each candidate on seed 0; the best by validation selection score (ties: the earlier candidate)."""
    tried = []
    best: tuple[float, dict[str, Any], TrainResult] | None = None
    for params in size.candidates[method]:
        res = runner.run(method, params, size.seeds[0])
        score = float(res.best_val["selection_score"])
        tried.append({"params": params, "val_selection_score": score, "test": headline(size.task, res)})
        _log(f"search {method} {params}: val selection {score:.4f}, test {headline(size.task, res):.4f}")
        if best is None or score > best[0]:
            best = (score, params, res)
    assert best is not None
    return best[1], best[2], tried


def transfer(
    size: TransferSize, data: str, work: Path, device: str = "auto", teacher: str = "minilm"
) -> dict[str, Any]:
    """Run the check; returns the results dict (see the module docstring and ``print_table``)."""
    started = time.perf_counter()
    task = get_task(size.task)
    if size.hole_window is not None:
        from orchestrator.bench.transfer_data import hole_window_data

        data = str(hole_window_data(data, work / "data", *size.hole_window))
    runner = _Runner(size, data, work, device)
    labels = np.asarray([ex.label for ex in runner.prepared.task_data.test])
    baseline = float(task.majority_baseline(labels))

    # 1. FT first: its best validation score is what the teacher has to beat.
    ft_params, ft_first, ft_tried = _search(runner, "ft", size)
    ft_val = headline(size.task, ft_first, "validation")

    # 2. The teacher: fine-tuned once, then one pass into the cache every KD method reads.
    teacher_dir = work / "teacher"
    cfg = TrainConfig(
        epochs=size.teacher_epochs,
        batch_size=size.teacher_batch_size or size.batch_size,
        lr=size.teacher_lr,
        device=device,
    )
    tuned = finetune_teacher(
        teacher,
        size.task,
        teacher_dir,
        data,
        cfg,
        size.max_length,
        size.max_samples,
        callback=lambda row: _log(
            f"teacher epoch {int(row['epoch'])}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
        ),
    )
    teacher_val = headline(size.task, tuned.result, "validation")
    teacher_test = headline(size.task, tuned.result)
    cache_s = runner.open_cache(teacher_dir)
    _log(
        f"teacher: val {teacher_val:.4f} (FT student {ft_val:.4f}), test {teacher_test:.4f}; cache {cache_s:.1f} s"
    )

    # 3. Each method's search, then its best candidate on the remaining seeds (seed 0 is the search's own run).
    firsts = {"ft": (ft_params, ft_first, ft_tried)}
    for method in KD_METHODS:
        firsts[method] = _search(runner, method, size)
    scores: dict[str, list[float]] = {}
    for method, (params, first, _) in firsts.items():
        scores[method] = [headline(size.task, first)]
        for seed in size.seeds[1:]:
            res = runner.run(method, params, seed)
            scores[method].append(headline(size.task, res))
            _log(f"{method} seed {seed}: test {scores[method][-1]:.4f}")

    ft = {"params": ft_params, "search": ft_tried, "val_score": ft_val}
    teacher_out = {"name": teacher, "score": teacher_test, "val_score": teacher_val}
    out = _results(size, scores, firsts, ft, teacher_out, baseline)
    out["device"] = _device_name(device)
    out["seconds"] = time.perf_counter() - started
    return out


def _results(
    size: TransferSize,
    scores: dict[str, list[float]],
    firsts: dict[str, tuple[dict[str, Any], TrainResult, list[dict]]],
    ft: dict[str, Any],
    teacher: dict[str, Any],
    baseline: float,
) -> dict[str, Any]:
    """The JSON the check writes: FT's scores, and each method's seed-paired difference from FT."""
    ft_scores = scores["ft"]
    methods = {}
    for method in KD_METHODS:
        methods[method] = {
            **paired_stats(scores[method], ft_scores),
            "mean": float(np.mean(scores[method])),
            "scores": scores[method],
            # the analysis rule: a score at most the majority baseline (+ DEGENERATE_MARGIN) is no finding
            "degenerate_seeds": sum(x <= baseline + DEGENERATE_MARGIN for x in scores[method]),
            "params": firsts[method][0],
            "search": firsts[method][2],
        }
    deltas = [m["mean_delta"] for m in methods.values()]
    no_ci_below = all(not (m["ci95"][1] < 0) for m in methods.values())
    advantage = teacher["val_score"] - ft["val_score"]
    return {
        "task": size.task,
        "teacher": {
            **teacher,
            "advantage_over_ft_val": advantage,
            "advantage_ok": advantage >= size.min_advantage,
        },
        "majority_baseline": baseline,
        "headline_metric": get_task(size.task).headline_metric,
        "seeds": list(size.seeds),
        "student": size.student,
        "size": {k: v for k, v in vars(size).items() if k != "candidates"},
        "ft": {
            "mean": float(np.mean(ft_scores)),
            "sd": float(np.std(ft_scores, ddof=1)) if len(ft_scores) > 1 else 0.0,
            "scores": ft_scores,
            "degenerate_seeds": sum(x <= baseline + DEGENERATE_MARGIN for x in ft_scores),
            "params": ft["params"],
            "search": ft["search"],
            "above_baseline": float(np.mean(ft_scores)) > baseline,
        },
        "methods": methods,
        "verdict": {
            "no_ci_wholly_below_zero": no_ci_below,
            "mean_of_mean_deltas": float(np.mean(deltas)),
            "passed": no_ci_below and float(np.mean(deltas)) > 0,
        },
    }


def print_table(r: dict[str, Any]) -> None:
    t = r["teacher"]
    print(
        f"\ntask {r['task']} ({r['headline_metric']}), device {r['device']}, student {r['student']}, "
        f"seeds {r['seeds']}\nteacher {t['name']}: test {t['score']:.4f}, val {t['val_score']:.4f} "
        f"(+{t['advantage_over_ft_val']:.4f} over FT on val; >= 0.10: {t['advantage_ok']}); "
        f"majority baseline {r['majority_baseline']:.4f}"
    )
    head = f"{'method':<7}{'mean':>8}{'delta':>9}{'ci95':>20}{'p':>8}  params"
    print(head)
    print("-" * 72)
    ft = r["ft"]
    print(f"{'ft':<7}{ft['mean']:>8.4f}{'':>9}{'':>20}{'':>8}  {ft['params']}  (sd {ft['sd']:.4f})")
    for name, m in r["methods"].items():
        ci = f"[{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}]"
        print(
            f"{name:<7}{m['mean']:>8.4f}{m['mean_delta']:>+9.4f}{ci:>20}{m['p_value']:>8.3f}  {m['params']}"
            + (f"  degenerate seeds: {m['degenerate_seeds']}" if m.get("degenerate_seeds") else "")
        )
    v = r["verdict"]
    print(
        f"no ci95 wholly below 0: {v['no_ci_wholly_below_zero']}; mean of mean deltas {v['mean_of_mean_deltas']:+.4f}; "
        f"passed: {v['passed']}   ({r['seconds'] / 60:.1f} min)"
    )
