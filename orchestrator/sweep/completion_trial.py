"""The Ray Tune trainable of a completion trial: one MLflow run per trial, like ``tune_trial.student_trainable``.

The run is created RUNNING with the factor tags (``task=completion``, ``teacher_mode``, ``student_init``,
``codexglue_version``, ``stage=student``, ``study``, ``teacher``, ``student``, ``method``, ``seed``, ``trial_key``),
gets the validation perplexity per epoch, then ``test_es``/``test_em``/``test_score``, size and speed, the
predictions and the checkpoint, and ends FINISHED; FAILED with the reason (tag ``error``) when anything raises. A
trial whose ``trial_key`` already has a FINISHED run returns at once.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from orchestrator.sweep import tracking


def _record(client: MlflowClient, run_id: str, out: dict[str, Any], out_dir: Path, start: float) -> dict:
    metrics = {**out["metrics"], "trial_seconds": time.perf_counter() - start}
    tracking.log_metrics(client, run_id, metrics)
    client.set_tag(run_id, "student_params", str(int(metrics["student_params"])))
    if out.get("cache_key"):
        client.set_tag(run_id, "teacher_cache", out["cache_key"])
    client.set_tag(run_id, "approximate", str(out.get("approximate", False)).lower())
    checkpoint = out.get("checkpoint")
    if checkpoint and Path(checkpoint).exists():
        target = out_dir / "checkpoint"
        target.mkdir(exist_ok=True)
        os.replace(checkpoint, target / "model.safetensors")
        client.log_artifact(run_id, str(target / "model.safetensors"), "checkpoint")
    tracking.log_json_artifact(client, run_id, out["predictions"], "predictions", "line_test.json")
    return metrics


def completion_trainable(config: dict[str, Any], tracking_uri: str, experiment_id: str) -> None:
    from ray import tune

    from orchestrator.sweep.completion_run import run_completion_trial

    trial = config["trial"]
    torch.set_num_threads(max(1, int(trial.get("cpus", 1))))
    client = MlflowClient(tracking_uri)
    done = tracking.finished_run(client, experiment_id, "student", trial["trial_key"])
    if done is not None:
        tune.report({"skipped": 1.0, **{k: v for k, v in done.data.metrics.items() if k.startswith("test_")}})
        return
    run = client.create_run(experiment_id, run_name=trial["run_name"], tags=trial["tags"])
    run_id = run.info.run_id
    start = time.perf_counter()
    try:
        tracking.log_params(client, run_id, trial["params"])
        out_dir = Path(tempfile.mkdtemp(prefix="completion-trial-"))

        def on_epoch(row: dict[str, float]) -> None:
            epoch = int(row["epoch"])
            tracking.log_metrics(client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            tune.report(dict(row))

        out = run_completion_trial(trial, out_dir, on_epoch)
        final = _record(client, run_id, out, out_dir, start)
        client.set_terminated(run_id, "FINISHED")
    except SystemExit:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then Tune retries or gives up
        tracking.record_failure(client, run_id, err)
        raise
    tune.report({**final, "trial_finished": 1.0})
