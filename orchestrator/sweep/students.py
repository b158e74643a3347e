"""The student stage: every trial not yet FINISHED in MLflow, as one Ray Tune grid over the trial configs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.sweep import mlflow_view, packing, tracking
from orchestrator.sweep.plan import StudyPlan, TrialUnit, student_train
from orchestrator.sweep.runenv import scratch_dir, tune_verbosity
from orchestrator.sweep.spec import StudySpec
from orchestrator.sweep.stages import log
from orchestrator.train.trial import student_shape


def stage_students(
    spec: StudySpec,
    plan: StudyPlan,
    data: str,
    caches: dict[str, Any],
    uri: str,
    client: Any,
    exp_id: str,
    parent: str,
) -> None:
    """Student trials through Ray Tune; trials already FINISHED in MLflow are not run again."""
    done = tracking.finished_keys(client, exp_id)
    todo = [t for t in plan.trials if t.trial_key not in done and "untuned" not in t.extra_tags]
    log(
        f"stage student: {len(plan.trials)} trials, {len(plan.trials) - len(todo)} already finished, "
        f"{len(todo)} to run"
    )
    folders = {(u.teacher, u.task): u.folder for u in plan.teachers}
    configs = [_trial_config(spec, plan, t, folders, data, parent) for t in todo]
    if configs and spec.trials_per_gpu > 1:
        log(
            packing.check_packing(
                spec.trials_per_gpu, packing.estimate_trials(spec, plan), packing.device_memory()
            )
        )
    if configs:
        _tune(spec, configs, caches, uri, exp_id)


def _trial_config(
    spec: StudySpec,
    plan: StudyPlan,
    t: TrialUnit,
    folders: dict[tuple[str, str], str],
    data: str,
    parent: str,
) -> dict[str, Any]:
    """What one trial's Tune worker needs: factors, training settings, where its teacher and cache are."""
    from kd_methods import layer_map

    storage = Path(spec.storage)
    sshape = student_shape(t.student)
    shape = plan.teacher_shapes.get(t.teacher)
    train = dict(t.settings.get("train") or student_train(spec, t.method))
    method_params = dict(t.settings.get("method_params", spec.params_for(t.method)))
    return {
        "trial_key": t.trial_key,
        "run_name": mlflow_view.run_name(t.task, t.student, t.method, t.teacher, t.seed),
        "tags": {**t.tags(spec.name), "mlflow.parentRunId": parent},
        "task": t.task,
        "student": t.student,
        "method": t.method,
        "seed": t.seed,
        "teacher": t.teacher,
        "teacher_dir": folders.get((t.teacher, t.task)),
        "data": data,
        "max_samples": spec.max_samples,
        "train": {**train, "precision": spec.precision},  # params below keep the recipe only (the key's)
        "method_params": method_params,
        "teacher_mode": spec.teacher_mode,
        "cache_dir": str(storage / "cache"),
        "scratch_dir": str(scratch_dir(storage, spec.name)),
        "cpus": spec.trial_resources.cpu,
        "ckd_layers": [0, *layer_map(sshape.num_layers, shape.num_layers)] if shape else None,
        "params": mlflow_view.trial_params(
            {
                **train,
                **{f"method.{k}": v for k, v in method_params.items()},
                "task": t.task,
                "teacher": t.teacher,
                "student": t.student,
                "method": t.method,
                "seed": t.seed,
                "data": data,
                "max_samples": spec.max_samples,
                "teacher_mode": spec.teacher_mode,
            }
        ),
    }


def _tune(
    spec: StudySpec, configs: list[dict[str, Any]], caches: dict[str, Any], uri: str, exp_id: str
) -> None:
    from ray import tune

    from orchestrator.sweep.node_loss import refund_node_loss
    from orchestrator.sweep.tune_trial import student_trainable

    refund_node_loss()  # a lost node is not a failure of the trial (node_loss.py)

    storage = Path(spec.storage)
    trainable = tune.with_parameters(
        student_trainable, caches=caches, tracking_uri=uri, experiment_id=exp_id, study=spec.name
    )
    trainable = tune.with_resources(trainable, packing.resources(spec))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,  # a fresh worker per trial costs seconds of imports
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((storage / spec.name / "ray_results").resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[Progress(len(configs), spec.max_concurrent_trials)],
            verbose=tune_verbosity(),  # 0 unless --verbose: our Progress lines instead of Tune's tables
        ),
    )
    tuner.fit()


def _trial_name(trial: Any) -> str:
    return f"{trial.trial_id}-{trial.config['trial']['run_name']}".replace(" ", "_")


class Progress:
    """A Tune callback printing trials done / running / failed and an estimate of the time left."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from ray import tune

        class _Progress(tune.Callback):
            def __init__(self, total: int, concurrency: int) -> None:
                self.total, self.concurrency = total, max(1, concurrency)
                self.done = self.failed = 0
                self.running: set[str] = set()
                self.started: dict[str, float] = {}
                self.durations: list[float] = []

            def _line(self) -> None:
                left = self.total - self.done - self.failed
                # No guess before a trial has finished: the first ones also pay for imports and data loading.
                eta = ", time left: estimating (after the first trial)" if left > 0 else ""
                if self.durations and left > 0:
                    mean = sum(self.durations) / len(self.durations)
                    secs = mean * left / self.concurrency
                    eta = f", about {secs / 60:.1f} min left" if secs >= 60 else f", about {secs:.0f} s left"
                log(
                    f"trials: {self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed{eta}"
                )

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.running.add(trial.trial_id)
                self.started[trial.trial_id] = time.time()
                if len(self.started) == 1:
                    self._line()  # the first line: what runs, and that the time left is not known yet

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.running.discard(trial.trial_id)
                self.done += 1
                self.durations.append(time.time() - self.started.get(trial.trial_id, time.time()))
                self._line()

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.running.discard(trial.trial_id)
                self.failed += 1
                t = trial.config.get("trial", {})
                log(
                    f"trial failed for good: {t.get('run_name')} (reason in its MLflow run; --status lists it)"
                )
                self._line()

        return _Progress(*args, **kwargs)
