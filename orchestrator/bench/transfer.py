"""The knowledge-transfer check: does each KD method pass a real teacher's knowledge on to its student?

    python -m orchestrator.bench transfer --out transfer.json               # 2 CPU cores, under 40 min
    python -m orchestrator.bench transfer --size gpu --data DIR --out transfer.json   # one GPU, about 4 min

A controlled experiment in the regime where KD's gains are best established: few labels, many unlabelled inputs
(DistilBERT, semi-supervised KD). Only a seeded part of the training split keeps its labels (``size.labelled``,
tasks/labels.py); the rest are unlabelled inputs. A real pretrained teacher (the offline all-MiniLM-L6-v2, or
``--teacher``) is fine-tuned on the labelled part only: its advantage is its pretraining. One teacher pass caches
its signals for every training input. Three arms, each student run the same number of optimiser steps:

* **transfer set** (the gate): FT trains on the labelled part; every KD method distils on all training inputs
  from the cache, its label term on the labelled samples only;
* **same labels** (the paper's regime, reported, no gate): every KD method trains on the labelled part only;
* **placebo**: the transfer-set arm with the teacher's cached rows permuted across samples (``remap.py``): the
  student gets the teacher's output distribution but no per-sample knowledge. Each method keeps the parameters it
  chose in the transfer-set arm.

Every method (FT included) gets the same candidates-per-method search on validation at seed 0 in each arm that
searches (transfer set, same labels); its choice then runs on every seed. Scores are the task's headline metric on
test, paired by seed with FT's. ``transfer_report.py`` computes the statistics and the verdict. Runs in-process
without Ray or MLflow, so it runs on a lent GPU machine as it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.bench.overhead import _device_name
from orchestrator.bench.sizes import TRANSFER_SIZES, TransferSize
from orchestrator.bench.transfer_pool import Pool
from orchestrator.bench.transfer_report import KD_METHODS, headline, paired_stats, print_table, results
from orchestrator.bench.transfer_runner import ARMS, LABELLED_EVALS, TransferRunner, _log, summarise, tile
from orchestrator.cache.spread import cls_pairwise_cos
from orchestrator.train.trainer import TrainResult
from tasks import get_task

SIZES = TRANSFER_SIZES
__all__ = [
    "ARMS",
    "LABELLED_EVALS",
    "SIZES",
    "TransferRunner",
    "paired_stats",
    "print_table",
    "summarise",
    "tile",
    "transfer",
]


def search(
    runner: TransferRunner, method: str, arm: str
) -> tuple[dict[str, Any], TrainResult, list[dict[str, Any]]]:
    """Each candidate on the first seed in this process; the best by validation selection score (ties: the
    earlier candidate). ``transfer-design`` uses it for FT alone."""
    size = runner.size
    results = [runner.run(method, params, size.seeds[0], arm) for params in size.candidates[method]]
    summaries = [summarise(size.task, r) for r in results]
    params, _, tried = choose(size, method, summaries)
    return params, results[size.candidates[method].index(params)], tried


def choose(
    size: TransferSize, method: str, runs: list[dict[str, float]]
) -> tuple[dict[str, Any], dict[str, float], list[dict[str, Any]]]:
    """The candidate with the best validation selection score (ties: the earlier one), its run, and every try."""
    cands = size.candidates[method]
    tried = [
        {"params": p, "val_selection_score": r["selection"], "test": r["test"]} for p, r in zip(cands, runs)
    ]
    best = max(range(len(cands)), key=lambda i: (runs[i]["selection"], -i))
    return cands[best], runs[best], tried


def transfer(
    size: TransferSize, data: str, work: Path, device: str = "auto", teacher: str = "minilm"
) -> dict[str, Any]:
    """Run the check; returns the results dict (``transfer_report.results``)."""
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    source_data = data
    if size.hole_window is not None:
        from tasks.hole_window import hole_window_data

        data = str(hole_window_data(data, work / "data", *size.hole_window))
    runner = TransferRunner(size, data, work, device)
    task = get_task(size.task)
    baseline = float(task.majority_baseline([ex.label for ex in runner.prepared.task_data.test]))
    spec = runner.spec.label() if runner.spec else "all"
    _log(f"{runner.n_all} training inputs, {len(runner.keep)} labelled ({spec})")

    t0 = time.perf_counter()
    teacher_dir, tuned = runner.finetune(data, teacher)
    timings["teacher_finetune_s"] = time.perf_counter() - t0
    timings["teacher_cache_s"] = runner.open_cache(teacher_dir)
    timings["teacher_reused"] = runner.teacher_reused
    timings["cache_built"] = runner.cache_built
    teacher_out = {
        "name": teacher,
        "score": headline(size.task, tuned),
        "val_score": headline(size.task, tuned, "validation"),
        "trained_on": len(runner.keep),
        # PKD's targets: 1.0 means the teacher's [CLS] state at that layer is one direction for every input
        "cls_pairwise_cos": {str(k): v for k, v in cls_pairwise_cos(runner.cache[0]).items()},
    }
    _log(f"teacher: val {teacher_out['val_score']:.4f}, test {teacher_out['score']:.4f}")
    with Pool(runner, data, size.workers) as pool:
        runs = students(runner, pool, timings)
    ft = runs.pop("ft")
    _log(f"FT: val {ft['val_score']:.4f} (teacher {teacher_out['val_score']:.4f}), test {ft['scores']}")
    out = results(size, ft, runs, teacher_out, baseline)
    out["labelled"] = runner.spec.to_dict() if runner.spec else "all"
    out["data"] = {"source": str(source_data), "train_inputs": runner.n_all, "labelled": len(runner.keep)}
    out["device"] = _device_name(device)
    out["workers"] = size.workers
    out["timings"] = timings
    out["seconds"] = time.perf_counter() - started
    return out


def students(runner: TransferRunner, pool: Any, timings: dict[str, float]) -> dict[str, Any]:
    """Every student run of the check, in two waves: (1) every candidate on the first seed (FT; each KD method in
    the transfer-set and the same-labels arms), then (2) each choice on the other seeds and the placebo on every
    seed with the transfer-set arm's choice. Returns ``{"ft": ..., arm: {method: {params, scores, search}}}``."""
    size = runner.size
    first, rest = size.seeds[0], size.seeds[1:]
    searched = [("ft", "transfer")] + [(m, a) for a in ("transfer", "same_labels") for m in KD_METHODS]
    t0 = time.perf_counter()
    wave = [(m, p, first, a) for m, a in searched for p in size.candidates[m]]
    done = iter(pool.map(wave))
    picks = {key: choose(size, key[0], [next(done) for _ in size.candidates[key[0]]]) for key in searched}
    timings["search_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    wave = [(m, picks[(m, a)][0], s, a) for m, a in searched for s in rest]
    wave += [(m, picks[(m, "transfer")][0], s, "placebo") for m in KD_METHODS for s in size.seeds]
    done = iter(pool.map(wave))
    out: dict[str, Any] = {"transfer": {}, "same_labels": {}, "placebo": {}}
    for m, a in searched:
        params, best, tried = picks[(m, a)]
        row = {
            "params": params,
            "search": tried,
            "scores": [best["test"]] + [next(done)["test"] for _ in rest],
        }
        if m == "ft":
            out["ft"] = {**row, "val_score": best["val"]}
        else:
            out[a][m] = row
    for m in KD_METHODS:
        out["placebo"][m] = {
            "params": picks[(m, "transfer")][0],
            "scores": [next(done)["test"] for _ in size.seeds],
        }
    timings["seeds_and_placebo_s"] = time.perf_counter() - t0
    return out
