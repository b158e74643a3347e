"""The transfer check's student runs: one prepared dataset, the training split and teacher source of each
(method, arm), one teacher cache (``transfer.py`` runs the check; worker processes build their own runner).

Who trains on what (docs/METHODS.md, "The knowledge-transfer check: design"): FT on the labelled part; a KD
method in the transfer-set arm on every training input (labels kept on the labelled part, -100 elsewhere) from
the cache; in the same-labels arm on the labelled part, reading the cache through the labelled rows; in the
placebo arm on every training input, reading the cache through a permutation of its rows (``remap.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from orchestrator.bench.overhead import build_shared_cache
from orchestrator.bench.remap import RemappedTeacher, placebo_permutation
from orchestrator.bench.sizes import TransferSize
from orchestrator.bench.transfer_report import headline
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.finetune import finetune_teacher
from orchestrator.train.trainer import EncodedSplit, TrainConfig, TrainResult, seed_everything
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial, student_shape
from tasks.hole_window import DataError
from tasks.labels import LabelSpec, labelled_indices, mask_split, subset_split, write_labelled_folder

ARMS = ("transfer", "same_labels", "placebo")
LABELLED_EVALS = 4  # runs on the labelled part are evaluated this many times as often as runs on all inputs


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
            source = self.sources[method]
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

    def finetune(self, data: str, teacher: str, name: str | None = None) -> tuple[Path, Any]:
        """The teacher fine-tuned on the labelled part only (a copy of the task folder with that training split),
        saved in ``work/<name>`` (default ``teacher-<labels>``, e.g. ``teacher-count=500``). A teacher found there
        with the same settings (teacher, recipe, data and labelled samples) is reused: the fine-tune is seeded, so
        it would come out the same, and on a 2-core CPU it is the check's most expensive step."""
        size = self.size
        teacher_dir = self.work / (name or f"teacher-{self.spec.label() if self.spec else 'all'}")
        settings = {
            "teacher": teacher,
            "task": size.task,
            "max_length": size.max_length,
            "max_samples": size.max_samples,
            "recipe": [size.teacher_epochs, size.teacher_lr, size.teacher_batch_size],
            "device": self.device,
            "data": self.prepared.task_data.fingerprint(),
            "labelled": hashlib.sha256(self.keep.tobytes()).hexdigest(),
        }
        marker = teacher_dir / "check_settings.json"
        if marker.is_file() and json.loads(marker.read_text()) == settings:
            summary = json.loads((teacher_dir / "finetune.json").read_text())
            _log(f"teacher: reusing {teacher_dir} (same settings)")
            self.teacher_reused = True
            return teacher_dir, SimpleNamespace(test=summary["test"], best_val=summary["best_val"])
        labelled_root = teacher_dir.with_name(teacher_dir.name + "-data")
        write_labelled_folder(Path(data) / size.task, labelled_root / size.task, self.keep)
        cfg = TrainConfig(
            epochs=size.teacher_epochs,
            batch_size=size.teacher_batch_size,
            lr=size.teacher_lr,
            device=self.device,
        )
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
        marker.write_text(json.dumps(settings, indent=2))
        self.teacher_reused = False
        return teacher_dir, tuned.result

    def open_cache(self, teacher_dir: Path) -> float:
        """One teacher pass over every training input (labelled or not) for every method's signals; its seconds."""
        from models.teacher import Teacher

        teacher = Teacher.load(str(teacher_dir), self.prepared.num_labels)
        tshape = teacher.shape
        del teacher
        report, seconds, reads = build_shared_cache(  # found instead of built when --work already holds it
            self.size.task,
            teacher_dir,
            tshape,
            student_shape(self.size.student),
            self.size.max_length,
            self.prepared,
            self.work,
            self.device,
        )
        self.attach(str(report.path), reads, tshape)
        self.cache_built = bool(report.built)
        return seconds

    def attach(self, path: str, reads: dict[str, Any], tshape: Any) -> None:
        """Read the teacher cache at ``path`` (a worker process attaches to the cache its parent built); ``reads``:
        each method's derived numbers (``KDMethod.cache_needs``), so each method reads the cache its own way."""
        self.cache = (path, reads, tshape)
        self.sources = {name: CachedTeacher.open(path, reads=derived) for name, derived in reads.items()}
        for (
            source
        ) in self.sources.values():  # signals are read by row: the cache must be of these very samples
            source.check_data(self.prepared.task_data.fingerprint())
        self.teacher_shape = tshape


def summarise(task: str, result: TrainResult) -> dict[str, float]:
    """What the check keeps of a run (a worker sends back this, not the model)."""
    return {
        "test": headline(task, result),
        "val": headline(task, result, "validation"),
        "selection": float(result.best_val["selection_score"]),
        "steps": result.steps,
        "train_seconds": result.train_seconds,
    }
