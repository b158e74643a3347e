"""The Ray Tune trainable: a plain function of one trial's config that trains a student and records it in MLflow.

Each trial writes its own MLflow run (not Tune's MLflow callback, which forgets its run map when a study is
restored): created RUNNING with the trial's factor tags, per-epoch metrics, final test metrics and artifacts, then
FINISHED; FAILED with the reason when it raises. A trial whose ``trial_key`` already has a FINISHED run returns at
once, so a retried or resumed trial is never recorded twice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from orchestrator.sweep import mlflow_view, tracking
from orchestrator.train.trainer import TrainConfig
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial

_PREPARED: dict[tuple, PreparedTrial] = {}  # reused actors keep encoded data between trials


def _prepared(cfg: TrialConfig) -> PreparedTrial:
    key = (cfg.task, cfg.student, cfg.data, cfg.max_length, cfg.max_samples, cfg.cache_dir)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(cfg)
    return _PREPARED[key]


def _teacher_source(trial: dict[str, Any], caches: dict[str, Any]) -> tuple[Any, Any]:
    """Open this trial's teacher cache: from the object store (zero-copy) or memory-mapped shards."""
    import ray

    from kd_methods import ModelShape
    from orchestrator.cache.serve import CachedTeacher, from_object_store

    entry = caches[f"{trial['teacher']}/{trial['task']}"]
    shape = ModelShape(*entry["shape"])
    ckd_layers = tuple(trial["ckd_layers"]) if trial["method"] == "ckd" else None
    if entry.get("ref") is not None:
        return from_object_store(ray.get(entry["ref"]), ckd_layers), shape
    return CachedTeacher.open(entry["path"], ckd_layers=ckd_layers), shape


def _scratch(trial: dict[str, Any]) -> Path:
    """The trial's scratch folder under the study's storage (not /tmp); removed once MLflow holds its artifacts."""
    scratch = Path(trial.get("scratch_dir") or tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="trial-", dir=scratch))


def _trial_config(trial: dict[str, Any], out_dir: Path) -> TrialConfig:
    """The trial as ``run_trial`` takes it, from the config the driver gave Tune."""
    train = TrainConfig(**{k: v for k, v in trial["train"].items() if k != "max_length"})
    return TrialConfig(
        task=trial["task"],
        student=trial["student"],
        method=trial["method"],
        teacher=trial.get("teacher_dir"),
        seed=trial["seed"],
        data=trial["data"],
        max_length=trial["train"]["max_length"],
        max_samples=trial["max_samples"],
        method_params=trial["method_params"],
        train=train,
        teacher_mode=trial["teacher_mode"],
        cache_dir=trial["cache_dir"],
        out_dir=str(out_dir),
    )


def _record_result(
    client: MlflowClient, run_id: str, result: Any, start: float, out_dir: Path
) -> dict[str, float]:
    """Final metrics, the checkpoint and the test predictions into the trial's MLflow run; returns the metrics."""
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
    tracking.log_metrics(client, run_id, final)
    client.set_tag(run_id, "student_params", str(result.params))
    if result.checkpoint and result.checkpoint.exists():
        target = out_dir / "checkpoint"
        target.mkdir(exist_ok=True)
        os.replace(result.checkpoint, target / "model.safetensors")
        client.log_artifact(run_id, str(target / "model.safetensors"), "checkpoint")
    tracking.log_json_artifact(client, run_id, result.test_predictions, "predictions", "test.json")
    name = client.get_run(run_id).info.run_name
    client.update_run(run_id, name=mlflow_view.scored_name(name, result.test.get("score")))
    return final


def student_trainable(
    config: dict[str, Any], caches: dict[str, Any], tracking_uri: str, experiment_id: str, study: str
) -> None:
    from ray import tune

    trial = config["trial"]
    stage = trial["tags"].get("stage", "student")  # "tune": a tuning trial (sweep/tuning_trial.py)
    torch.set_num_threads(max(1, int(trial.get("cpus", 1))))
    client = MlflowClient(tracking_uri)
    done = tracking.finished_run(client, experiment_id, stage, trial["trial_key"])
    if done is not None:
        keep = ("test_", "best_val_")
        tune.report({"skipped": 1.0, **{k: v for k, v in done.data.metrics.items() if k.startswith(keep)}})
        return

    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    tags = {**trial["tags"], "node_id": node}
    if trial["teacher"] != "none" and trial["teacher_mode"] == "cached":
        tags["teacher_cache"] = caches[f"{trial['teacher']}/{trial['task']}"]["key"]
    run = client.create_run(experiment_id, run_name=trial["run_name"], tags=tags)
    run_id = run.info.run_id
    out_dir: Path | None = None
    try:
        tracking.log_params(client, run_id, trial["params"])
        out_dir = _scratch(trial)
        cfg = _trial_config(trial, out_dir)
        prepared = _prepared(cfg)
        tracking.log_params(client, run_id, {"train_samples": len(prepared.encoded["train"])})
        source, shape = (None, None)
        if trial["teacher"] != "none" and trial["teacher_mode"] == "cached":
            source, shape = _teacher_source(trial, caches)

        if stage == "tune":
            from orchestrator.sweep.tuning_trial import tuning_epoch, tuning_prepared

            prepared, cfg.out_dir = tuning_prepared(prepared), None  # no test set, no checkpoint
            on_epoch = tuning_epoch(client, run_id)
        else:

            def on_epoch(row: dict[str, float]) -> None:
                epoch = int(row["epoch"])
                tracking.log_metrics(
                    client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step=epoch
                )
                tune.report(dict(row))

        start = time.perf_counter()
        result = run_trial(
            cfg, callback=on_epoch, teacher_source=source, teacher_shape=shape, prepared=prepared
        )
        tracking.log_params(client, run_id, {"precision": result.precision})  # as resolved on its device
        if stage == "tune":
            final = {
                "trial_seconds": time.perf_counter() - start,
                "best_epoch": float(result.best_epoch),
                "best_val_selection_score": float(result.best_val.get("selection_score", float("nan"))),
                "epochs_run": float(len(result.history)),
            }
            tracking.log_metrics(client, run_id, final)
        else:
            final = _record_result(client, run_id, result, start, out_dir)
        client.set_terminated(run_id, "FINISHED")
    except SystemExit:
        # Tune stops a trial by raising SystemExit inside report(): the trial did not fail, it was stopped. A
        # tuning trial stopped by ASHA is completed by the driver (tuning_stage.TuneRecorder), which knows why.
        if stage != "tune":
            client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then Tune retries or gives up
        tracking.record_failure(client, run_id, err)
        raise
    finally:
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
    # Outside the try: the run is FINISHED whatever Tune does with this last report.
    tune.report({**final, "trial_finished": 1.0})
