"""MLflow for the single-run commands (``orchestrator.trial``, ``orchestrator.finetune_teacher``): when
``MLFLOW_TRACKING_URI`` is set, the run is recorded like a study's (stage tag, factor tags, params, per-epoch
``val_*`` metrics, ``test_*`` with ``test_score`` and ``test_majority_baseline``, the test predictions); unset,
nothing is written. The experiment is ``--experiment`` (default: ``MLFLOW_EXPERIMENT_NAME``, else ``trials`` or
``teachers``)."""

from __future__ import annotations

import os
import time
from typing import Any


class CliRun:
    """One MLflow run for a command; every method is a no-op when ``MLFLOW_TRACKING_URI`` is unset."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> None:
        self.uri = os.environ.get("MLFLOW_TRACKING_URI")
        self.client: Any = None
        self.run_id: str | None = None
        self.start = time.perf_counter()
        if not self.uri:
            return
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient

        from orchestrator.core import tracking
        from orchestrator.core.store import init_store

        tracking.check_tracking(self.uri)  # no server there, or a SQLite file in a missing folder: one line
        if self.uri.startswith("sqlite:///"):  # two commands started together on a new file make it in turn
            init_store(self.uri, own=False)
        self.client = MlflowClient(self.uri)
        exp_id = tracking.experiment_id(self.client, experiment)
        run = self.client.create_run(exp_id, run_name=run_name, tags={"study": experiment, **tags})
        self.run_id = run.info.run_id
        tracking.log_params(self.client, self.run_id, params)
        print(f"MLflow: run '{run_name}' in experiment '{experiment}' at {self.uri}", flush=True)

    def epoch(self, row: dict[str, float]) -> None:
        if self.run_id is None:
            return
        from orchestrator.core import tracking

        tracking.log_metrics(
            self.client, self.run_id, {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
        )

    def finish(self, result: Any, extra: dict[str, float] | None = None) -> None:
        if self.run_id is None:
            return
        from orchestrator.core import tracking

        final = {f"test_{k}": v for k, v in result.test.items() if k != "selection_score"}
        final.update(
            {
                "train_seconds": result.train_seconds,
                "teacher_seconds": result.teacher_seconds,
                "inference_samples_per_s": result.inference_samples_per_s,
                "best_epoch": float(result.best_epoch),
                "trial_seconds": time.perf_counter() - self.start,
                **(extra or {}),
            }
        )
        tracking.log_metrics(self.client, self.run_id, final)
        if result.test_predictions:
            tracking.log_json_artifact(
                self.client, self.run_id, result.test_predictions, "predictions", "test.json"
            )
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, err: BaseException) -> None:
        if self.run_id is None:
            return
        self.client.set_tag(self.run_id, "error", f"{type(err).__name__}: {err}"[:4000])
        self.client.set_terminated(self.run_id, "FAILED")


def experiment_name(arg: str | None, default: str) -> str:
    return arg or os.environ.get("MLFLOW_EXPERIMENT_NAME") or default
