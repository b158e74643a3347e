"""What a trial does, one function per study kind, run inside the trial wrapper (``trial.py``) with the trial's
MLflow run open: train and evaluate, then log the result (metrics, checkpoint, predictions) into the run. Each
returns the final metrics the wrapper reports to Tune.

* classification: ``run_trial`` (``train/trial.py``) on the trial's ``TrialConfig``, reading its teacher cache
  from the object store or the shards (what its method reads: ``KDMethod.cache_needs``); a tuning trial
  (``stage=tune``) trains on validation only and records its best validation selection score.
* completion: ``run_completion_work`` (``train/lm_work.py``): distil, then complete the test lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.device import resolve_device, resolve_precision
from orchestrator.design.units import slot
from orchestrator.sweep.context import TrialRun
from orchestrator.sweep.mlflow_view import scored_name

_PREPARED: dict[tuple, Any] = {}  # reused actors keep encoded data between trials


def _prepared(cfg: Any) -> Any:
    from orchestrator.train.trial import prepare

    # the data seed too: a reused actor must never serve one study's (or data seed's) sample to another
    key = (cfg.task, cfg.student, cfg.data, cfg.data_seed, cfg.max_length, cfg.max_samples, cfg.cache_dir)
    key += (json.dumps(cfg.labels, sort_keys=True),)  # the labels level: which samples keep their label
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(cfg)
    return _PREPARED[key]


def teacher_cache(trial: Any, caches: dict[str, Any]) -> tuple[Any, Any]:
    """Open the trial's teacher cache (zero-copy from the object store, or memory-mapped shards) for what its
    method reads: ``KDMethod.cache_needs`` names the derived signals (CKD's Gram numbers) it reads."""
    import ray

    from kd_methods import ModelShape, get_method
    from orchestrator.cache.serve import CachedTeacher, from_object_store
    from orchestrator.train.trial import student_shape

    entry = caches[slot(trial.teacher, trial.task, trial.labels)]
    shape = ModelShape(*entry["shape"])
    cfg = trial.work
    _, reads = get_method(cfg.method)(student_shape(cfg.student), shape, **cfg.method_params).cache_needs()
    if entry.get("ref") is not None:
        return from_object_store(ray.get(entry["ref"]), reads), shape
    return CachedTeacher.open(entry["path"], reads=reads), shape


def checkpoint(run: TrialRun, path: Path | None) -> None:
    """The best checkpoint into the run's ``checkpoint/model.safetensors``."""
    if path and Path(path).exists():
        target = run.out_dir / "checkpoint"
        target.mkdir(exist_ok=True)
        os.replace(path, target / "model.safetensors")
        run.client.log_artifact(run.run_id, str(target / "model.safetensors"), "checkpoint")


def classification_work(trial: Any, run: TrialRun) -> dict[str, float]:
    from orchestrator.train.trial import run_trial
    from tasks.labels import UNLABELLED, method_view

    cached = trial.teacher != "none" and trial.work.teacher_mode == "cached"
    cfg = dataclasses.replace(trial.work, out_dir=str(run.out_dir))
    # FT on the labelled part, KD on every input with labels masked outside it (tasks/labels.py)
    base = _prepared(cfg)
    prepared = method_view(base, trial.teacher == "none")
    train, n_all = prepared.encoded["train"], len(base.encoded["train"])
    labelled = n_all if base.keep is None else len(base.keep)  # the task's, at the trial's labels level
    counts = {"labelled_samples": labelled, "unlabelled_samples": n_all - labelled}
    tracking.log_params(run.client, run.run_id, {"train_samples": len(train), **counts})
    tracking.log_metrics(
        run.client, run.run_id, {"train_labelled": sum(y != UNLABELLED for y in train.labels)}
    )
    if cached:
        key = run.context.caches[slot(trial.teacher, trial.task, trial.labels)]["key"]
        run.client.set_tag(run.run_id, "teacher_cache", key)
    source, shape = teacher_cache(trial, run.context.caches) if cached else (None, None)
    if trial.stage == "tune":
        from orchestrator.sweep.tuning_trial import BASELINE, tuning_prepared
        from tasks import get_task

        prepared, cfg = (
            tuning_prepared(prepared),
            dataclasses.replace(cfg, out_dir=None),
        )  # no test, no checkpoint
        # before training (an ASHA-stopped trial ends inside it): what a constant scores, for sweep/tuning.py
        labels = prepared.encoded["validation"].labels
        run.log_metrics({BASELINE: get_task(cfg.task).selection_baseline(labels)})
    # as resolved on its device, before training: a tuning trial ASHA stops ends inside run_trial, and records it too
    precision = resolve_precision(cfg.train.precision, resolve_device(cfg.train.device))
    tracking.log_params(run.client, run.run_id, {"precision": precision})
    start = time.perf_counter()
    result = run_trial(
        cfg, callback=run.on_epoch, teacher_source=source, teacher_shape=shape, prepared=prepared
    )
    if trial.stage == "tune":
        final = {
            "trial_seconds": time.perf_counter() - start,
            "best_epoch": float(result.best_epoch),
            "best_val_selection_score": float(result.best_val.get("selection_score", float("nan"))),
            "epochs_run": float(len(result.history)),
        }
        run.log_metrics(final)
        return final
    return _record_classification(run, result, start)


def _record_classification(run: TrialRun, result: Any, start: float) -> dict[str, float]:
    """Final metrics, the checkpoint and the test predictions into the trial's run; returns the metrics."""
    final = {f"test_{k}": v for k, v in result.test.items() if k != "selection_score"}
    final.update(
        {
            "train_seconds": result.train_seconds,
            "teacher_seconds": result.teacher_seconds,
            "eval_seconds": result.eval_seconds,
            "inference_samples_per_s": result.inference_samples_per_s,
            "student_params": float(result.params),
            "best_epoch": float(result.best_epoch),
            "trial_seconds": time.perf_counter() - start,
            "steps": float(result.steps),
        }
    )
    run.log_metrics(final)
    run.client.set_tag(run.run_id, "student_params", str(result.params))
    checkpoint(run, result.checkpoint)
    tracking.log_json_artifact(run.client, run.run_id, result.test_predictions, "predictions", "test.json")
    name = run.client.get_run(run.run_id).info.run_name
    run.client.update_run(run.run_id, name=scored_name(name, result.test.get("score")))
    return final


def completion_work(trial: Any, run: TrialRun) -> dict[str, float]:
    from orchestrator.train.lm_work import run_completion_work

    start = time.perf_counter()
    out = run_completion_work(trial.work, run.out_dir, run.on_epoch)
    metrics = {**out["metrics"], "trial_seconds": time.perf_counter() - start}
    run.log_metrics(metrics)
    run.client.set_tag(run.run_id, "student_params", str(int(metrics["student_params"])))
    if out.get("cache_key"):
        run.client.set_tag(run.run_id, "teacher_cache", out["cache_key"])
    run.client.set_tag(run.run_id, "approximate", str(out.get("approximate", False)).lower())
    checkpoint(run, out.get("checkpoint"))
    tracking.log_json_artifact(run.client, run.run_id, out["predictions"], "predictions", "line_test.json")
    name = run.client.get_run(run.run_id).info.run_name  # score first, as a classification run's
    run.client.update_run(run.run_id, name=scored_name(name, metrics.get("test_score"), digits=1))
    return metrics


WORK: dict[str, Callable[[Any, TrialRun], dict[str, float]]] = {
    "classification": classification_work,
    "completion": completion_work,
}
