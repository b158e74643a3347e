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

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bench.overhead import _device_name, build_shared_cache
from orchestrator.bench.remap import RemappedTeacher, placebo_permutation
from orchestrator.bench.sizes import TRANSFER_SIZES, TransferSize
from orchestrator.bench.transfer_data import DataError
from orchestrator.bench.transfer_report import KD_METHODS, headline, paired_stats, print_table, results
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.finetune import finetune_teacher
from orchestrator.train.trainer import EncodedSplit, TrainConfig, TrainResult
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial, student_shape
from tasks import get_task
from tasks.labels import LabelSpec, labelled_indices, mask_split, subset_split, write_labelled_folder

SIZES = TRANSFER_SIZES
ARMS = ("transfer", "same_labels", "placebo")
LABELLED_EVALS = 4  # runs on the labelled part are evaluated this many times as often as runs on all inputs
__all__ = ["ARMS", "SIZES", "TransferRunner", "paired_stats", "print_table", "transfer"]


def _log(msg: str) -> None:
    print(f"[transfer {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tile(keep: np.ndarray, n: int) -> np.ndarray:
    """``keep`` repeated so that one pass over it (one "epoch", after which the trainer evaluates on validation)
    holds about ``n`` samples."""
    return np.tile(keep, max(1, round(n / max(len(keep), 1))))


class TransferRunner:
    """Trains students on one prepared dataset: the training split for each (method, arm), one teacher cache."""

    def __init__(self, size: TransferSize, data: str, work: Path, device: str) -> None:
        self.size, self.work, self.device = size, work, device
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
        train = self.prepared.encoded["train"]
        if len(train) < size.min_train:
            raise DataError(
                f"{data}: {len(train)} {size.task} training samples, the {size.task} check needs at least "
                f"{size.min_train}: build them with python -m tasks.build_local --out {data} --tasks {size.task} "
                + " ".join(f"--{k} {v}" for k, v in (size.build or {}).items())
            )
        self.n_all = len(train)
        self.relabel(size.labelled)
        self.sources: dict[str, Any] = {}
        self.teacher_shape: Any = None

    def relabel(self, labelled: dict[str, Any]) -> None:
        """Draw the labelled part (``LabelSpec`` mapping) and set up what each kind of run trains on."""
        train = self.prepared.encoded["train"]
        self.spec = LabelSpec.parse(labelled)
        self.keep = labelled_indices(train.labels, self.spec, self.size.task)
        # What each run trains on: FT and the same-labels arm the labelled part, KD the masked whole. Every run
        # takes the same steps; a run on the labelled part is evaluated four times as often as one on all inputs
        # (its "epoch" is the labelled part tiled to a quarter of them): it can overfit, and finer early stopping
        # favours FT, so a KD gain cannot come from FT stopped at a bad step.
        tiled = tile(self.keep, self.n_all // LABELLED_EVALS)
        self.splits: dict[str, EncodedSplit] = {
            "labelled": subset_split(train, tiled),
            "all": mask_split(train, self.keep),
        }
        self.rows = {"labelled": tiled, "placebo": placebo_permutation(self.n_all, self.size.placebo_seed)}

    def run(
        self, method: str, params: dict[str, Any], seed: int, arm: str = "transfer", steps: int | None = None
    ) -> TrainResult:
        """One student run of ``steps`` (default: the size's) optimiser steps; FT trains on the labelled part
        whatever the arm."""
        if arm not in ARMS:
            raise ValueError(f"unknown arm '{arm}'; valid: {list(ARMS)}")
        params = dict(params)
        lr = float(params.pop("lr"))
        on = "labelled" if method == "ft" or arm == "same_labels" else "all"
        split = self.splits[on]
        steps = steps or self.size.steps
        epochs = math.ceil(steps / math.ceil(len(split) / self.size.batch_size))
        train = TrainConfig(
            epochs=epochs, batch_size=self.size.batch_size, lr=lr, device=self.device, max_steps=steps
        )
        cfg = TrialConfig(
            **{**vars(self.base), "method": method, "seed": seed, "method_params": params, "train": train}
        )
        source = None
        if method != "ft":
            source = self.sources["ckd" if method == "ckd" else "plain"]
            if arm == "same_labels":
                source = RemappedTeacher(source, {"train": self.rows["labelled"]})
            elif arm == "placebo":
                source = RemappedTeacher(source, {"train": self.rows["placebo"]})
        prepared = PreparedTrial(
            self.prepared.task_data,
            self.prepared.tokenizer,
            {**self.prepared.encoded, "train": split},
            self.prepared.num_labels,
        )
        return run_trial(cfg, teacher_source=source, teacher_shape=self.teacher_shape, prepared=prepared)

    def finetune(self, data: str, teacher: str, name: str = "teacher") -> tuple[Path, Any]:
        """The teacher fine-tuned on the labelled part only (a copy of the task folder with that training split),
        saved in ``work/<name>``."""
        folder = Path(data) / self.size.task
        labelled_root = self.work / f"{name}-data"
        write_labelled_folder(folder, labelled_root / self.size.task, self.keep)
        size = self.size
        cfg = TrainConfig(
            epochs=size.teacher_epochs,
            batch_size=size.teacher_batch_size,
            lr=size.teacher_lr,
            device=self.device,
        )
        teacher_dir = self.work / name
        from orchestrator.train.trainer import seed_everything

        seed_everything(0)  # the teacher's new classification head: the same whatever ran before
        tuned = finetune_teacher(
            teacher,
            size.task,
            teacher_dir,
            str(labelled_root),
            cfg,
            size.max_length,
            size.max_samples,
            callback=lambda row: _log(
                f"teacher epoch {int(row['epoch'])}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            ),
        )
        return teacher_dir, tuned.result

    def open_cache(self, teacher_dir: Path) -> float:
        """One teacher pass over every training input (labelled or not) for every method's signals; its seconds."""
        from models.teacher import Teacher

        teacher = Teacher.load(str(teacher_dir), self.prepared.num_labels)
        tshape = teacher.shape
        del teacher
        report, seconds, ckd_layers = build_shared_cache(
            self.size.task,
            teacher_dir,
            tshape,
            student_shape(self.size.student),
            self.size.max_length,
            self.prepared,
            self.work,
            self.device,
        )
        self.attach(str(report.path), tuple(ckd_layers), tshape)
        return seconds

    def attach(self, path: str, ckd_layers: tuple[int, ...], tshape: Any) -> None:
        """Read the teacher cache at ``path`` (a worker process attaches to the cache its parent built)."""
        self.cache = (path, ckd_layers, tshape)
        self.sources = {
            "plain": CachedTeacher.open(path),
            "ckd": CachedTeacher.open(path, ckd_layers=ckd_layers),
        }
        for (
            source
        ) in self.sources.values():  # signals are read by row: the cache must be of these very samples
            source.check_data(self.prepared.task_data.fingerprint())
        self.teacher_shape = tshape


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


def summarise(task: str, result: TrainResult) -> dict[str, float]:
    """What the check keeps of a run (a worker sends back this, not the model)."""
    return {
        "test": headline(task, result),
        "val": headline(task, result, "validation"),
        "selection": float(result.best_val["selection_score"]),
        "steps": result.steps,
        "train_seconds": result.train_seconds,
    }


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
    from orchestrator.bench.transfer_pool import Pool

    started = time.perf_counter()
    timings: dict[str, float] = {}
    source_data = data
    if size.hole_window is not None:
        from orchestrator.bench.transfer_data import hole_window_data

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
    teacher_out = {
        "name": teacher,
        "score": headline(size.task, tuned),
        "val_score": headline(size.task, tuned, "validation"),
        "trained_on": len(runner.keep),
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
