"""Run a study: the whole grid as one resumable Ray Tune sweep, every unit recorded in MLflow.

    python -m orchestrator.study smoke              # run (or resume) a built-in profile: smoke, local, full
    python -m orchestrator.study my_study.yaml      # or a YAML file
    python -m orchestrator.study smoke --plan [--json]
    python -m orchestrator.study smoke --status [--json]

Stages: tokenizers -> teacher fine-tuning per (teacher, task) -> teacher cache per (teacher, task) -> student
trials. A stage whose output exists is skipped; a trial whose trial_key has a FINISHED MLflow run is not rerun.
When MLFLOW_TRACKING_URI is unset the study starts its own MLflow server on 127.0.0.1 (SQLite under the storage
path). With RAY_ADDRESS (or --address) it joins that cluster; otherwise it starts Ray on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from orchestrator import tracking  # noqa: E402
from orchestrator.spec import StudyError, StudySpec, load_spec  # noqa: E402
from orchestrator.stages import StudyPlan, build_plan, describe, plan_dict, student_shape, student_train  # noqa: E402


def log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class StudyOutcome:
    name: str
    tracking_uri: str
    experiment_id: str
    planned: int
    finished: int
    failed: list[dict[str, str]] = field(default_factory=list)
    teacher_passes: int = 0
    ui_command: str = ""

    @property
    def complete(self) -> bool:
        return self.finished == self.planned


# ---------------------------------------------------------------------------------------------------------------
# Stage work that runs on the cluster (Ray tasks)


def _finetune_unit(
    teacher_source: str,
    task: str,
    folder: str,
    data: str,
    train: dict[str, Any],
    max_samples: int | None,
    trust_remote_code: bool,
    cpus: float,
) -> dict[str, Any]:
    import torch

    from orchestrator.finetune_teacher import finetune_teacher
    from orchestrator.trainer import TrainConfig

    torch.set_num_threads(max(1, int(cpus)))
    cfg = TrainConfig(**{k: v for k, v in train.items() if k != "max_length"})
    out = finetune_teacher(
        teacher_source, task, Path(folder), data, cfg, train["max_length"], max_samples, trust_remote_code
    )
    return {"summary": out.result.summary(), "predictions": out.result.test_predictions}


def _build_cache_unit(
    request: Any, task: str, data: str, seed: int, max_samples: int | None, storage: str, gpus: float
) -> Any:
    from orchestrator.teacher_cache import get_or_build
    from orchestrator.trial import load_data
    from tasks import get_task

    task_data = load_data(task, data, seed, max_samples)
    return get_or_build(
        request, task_data, get_task(task).num_labels, storage, use_ray=True, gpus_per_task=gpus
    )


# ---------------------------------------------------------------------------------------------------------------


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
                eta = ""
                if self.durations:
                    mean = sum(self.durations) / len(self.durations)
                    eta = f", about {mean * max(left, 0) / self.concurrency / 60:.1f} min left"
                log(
                    f"trials: {self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed{eta}"
                )

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.running.add(trial.trial_id)
                self.started[trial.trial_id] = time.time()

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


def _trial_name(trial: Any) -> str:
    return f"{trial.trial_id}-{trial.config['trial']['run_name']}"


def _tracking_uri(spec: StudySpec, start: bool) -> tuple[str, tracking.MlflowServer | None]:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    if not start:
        return tracking.local_store(spec.storage)[0], None
    server = tracking.start_server(spec.storage)
    return server.uri, server


def _init_ray(address: str | None, env: dict[str, str]) -> bool:
    """Join ``address`` (or RAY_ADDRESS) or start Ray here. Returns True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": env}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Joining a cluster (or running as a Ray job): keep the job's own runtime environment (its working_dir);
        # trials get the tracking URI as a parameter, not from the environment.
        ray.init(address=address, log_to_driver=False)
    else:
        # Keep every connection on loopback on a single machine (see ENVIRONMENT.md).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
    return True


def _parent_run(client: Any, exp_id: str, spec: StudySpec) -> str:
    runs = tracking.runs_by_stage(client, exp_id, "study")
    if runs:
        run_id = runs[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        exp_id, run_name=f"study-{spec.name}", tags={"stage": "study", "study": spec.name}
    )
    tracking.log_params(
        client, run.info.run_id, {"study_name": spec.name, **json.loads(spec.model_dump_json())}
    )
    return run.info.run_id


def _unit_tags(study: str, stage: str, key: str, parent: str, **factors: str) -> dict[str, str]:
    base = dict.fromkeys(tracking.FACTOR_TAGS, "none")
    return {**base, **factors, "stage": stage, "study": study, "trial_key": key, "mlflow.parentRunId": parent}


def run_study(spec: StudySpec, address: str | None = None) -> StudyOutcome:
    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator.trial import resolve_data

    storage = Path(spec.storage).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    data = str(resolve_data(spec.data))
    spec = spec.model_copy(update={"storage": str(storage)})
    plan = build_plan(spec)
    log(describe(plan).replace("\n", "\n    "))

    uri, server = _tracking_uri(spec, start=True)
    if server:
        log(f"MLflow server (started by this study): {server.uri}")
    client = MlflowClient(uri)
    # With our own server, artifacts go straight to files under the storage path, so the SQLite store can be read
    # (notebooks, --status) after the server is gone. A user's server decides where its artifacts go.
    location = None
    if server:
        location = (server.artifacts / spec.name).as_uri()
    elif uri.startswith("sqlite:///"):
        # MLflow would default to ./mlruns in the current folder: keep artifacts beside the database instead.
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / spec.name).as_uri()
    exp_id = tracking.experiment_id(client, spec.name, artifact_location=location)
    stale = tracking.mark_stale_running(client, exp_id, "left RUNNING by an earlier driver that stopped")
    if stale:
        log(f"marked {stale} run(s) left RUNNING by an earlier driver as KILLED")
    parent = _parent_run(client, exp_id, spec)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false"}
    started_ray = _init_ray(address, env)
    outcome = StudyOutcome(
        spec.name,
        uri,
        exp_id,
        planned=len(plan.trials),
        finished=0,
        ui_command=server.ui_command() if server else f"open {uri}",
    )
    try:
        _run_stages(spec, plan, data, client, exp_id, parent, uri, outcome)
    finally:
        if started_ray:
            ray.shutdown()
        if server:
            server.stop()
    return outcome


def _run_stages(
    spec: StudySpec,
    plan: StudyPlan,
    data: str,
    client: Any,
    exp_id: str,
    parent: str,
    uri: str,
    outcome: StudyOutcome,
) -> None:
    import numpy as np
    import ray
    from ray import tune

    from kd_methods import layer_map
    from models.teacher import create_random_teacher
    from orchestrator.teacher_cache import (
        CachedTeacher,
        CacheRequest,
        fits_object_store,
        human_bytes,
        put_in_object_store,
    )
    from orchestrator.trial import family_tokenizer, load_data, resolve_teacher
    from orchestrator.tune_trial import student_trainable
    from tasks import get_task

    storage = Path(spec.storage)
    seed0 = spec.seeds[0]

    # 1. Tokenizers, one per (task family, vocabulary size), cached on disk.
    for family, vocab in plan.families:
        task = next(t for t in spec.tasks if get_task(t).family == family)
        family_tokenizer(task, vocab, data, storage / "cache" / "tokenizers", seed0, spec.max_samples)
    log(f"stage tokenizers: {len(plan.families)} ready")

    # 2. Teacher fine-tuning per (teacher, task), as Ray tasks on the cluster.
    teachers = {t.name: t for t in spec.teachers}
    sources: dict[str, str] = {}
    for t in spec.teachers:
        if t.source.startswith("random:"):
            base = storage / "teachers" / "base" / f"{t.name}-{t.layers}x{t.hidden}"
            if not (base / "config.json").exists():
                texts = [
                    ex.code
                    for task in spec.tasks
                    for ex in load_data(task, data, seed0, spec.max_samples).train
                ]
                create_random_teacher(
                    base,
                    arch=t.source.split(":", 1)[1],
                    num_layers=t.layers or 2,
                    hidden_size=t.hidden or 64,
                    num_heads=2,
                    intermediate_size=2 * (t.hidden or 64),
                    tokenizer_texts=texts,
                    vocab_size=1000,
                    num_labels=2,
                    max_length=max(spec.teacher_train.max_length, spec.student_train.max_length),
                )
            sources[t.name] = str(base)
        else:
            sources[t.name] = resolve_teacher(t.source)
    res = spec.teacher_resources
    finetune = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=spec.max_failures)(_finetune_unit)
    pending = {}
    for unit in plan.teachers:
        if not (Path(unit.folder) / "finetune.json").exists():
            t = teachers[unit.teacher]
            pending[unit] = finetune.remote(
                sources[unit.teacher],
                unit.task,
                unit.folder,
                data,
                spec.teacher_train.model_dump(),
                spec.max_samples,
                t.trust_remote_code,
                res.cpu,
            )
    if pending:
        log(f"stage teacher_finetune: {len(pending)} to run, {len(plan.teachers) - len(pending)} found")
    for unit in plan.teachers:
        if tracking.finished_run(client, exp_id, "teacher_finetune", unit.key):
            continue
        if unit in pending:
            out = ray.get(pending[unit])
        else:
            summary = json.loads((Path(unit.folder) / "finetune.json").read_text())
            preds = Path(unit.folder) / "test_predictions.json"
            out = {
                "summary": summary,
                "predictions": json.loads(preds.read_text()) if preds.exists() else None,
            }
        run = client.create_run(
            exp_id,
            run_name=f"teacher-{unit.teacher}-{unit.task}",
            tags=_unit_tags(
                spec.name, "teacher_finetune", unit.key, parent, task=unit.task, teacher=unit.teacher
            ),
        )
        rid = run.info.run_id
        tracking.log_params(
            client,
            rid,
            {
                "source": teachers[unit.teacher].source,
                "folder": unit.folder,
                **spec.teacher_train.model_dump(),
            },
        )
        for row in out["summary"].get("history", []):
            tracking.log_metrics(
                client, rid, {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"])
            )
        s = out["summary"]
        tracking.log_metrics(
            client,
            rid,
            {
                **{f"test_{k}": v for k, v in s["test"].items() if k != "selection_score"},
                "train_seconds": s["train_seconds"],
                "teacher_params": s["params"],
                "inference_samples_per_s": s["inference_samples_per_s"],
            },
        )
        if out.get("predictions"):
            tracking.log_json_artifact(client, rid, out["predictions"], "predictions", "test.json")
        client.set_terminated(rid, "FINISHED")
    log(f"stage teacher_finetune: {len(plan.teachers)} teachers ready")

    # 3. Teacher caches: one teacher pass per (teacher, task), shared by every trial.
    caches: dict[str, Any] = {}
    folders = {(u.teacher, u.task): u.folder for u in plan.teachers}
    for unit in plan.caches:
        folder = folders[(unit.teacher, unit.task)]
        request = CacheRequest(
            folder, unit.task, unit.spec, spec.student_train.max_length, spec.cache.dtype, unit.ckd_layer_sets
        )
        report = ray.get(
            ray.remote(num_cpus=0)(_build_cache_unit).remote(
                request, unit.task, data, seed0, spec.max_samples, str(storage), res.gpu
            )
        )
        shape = plan.teacher_shapes[unit.teacher]
        entry: dict[str, Any] = {
            "path": str(report.path),
            "key": report.key,
            "shape": [shape.num_layers, shape.hidden_size],
        }
        if fits_object_store(report.bytes, spec.cache.object_store_share):
            entry["ref"] = put_in_object_store(report.path)
        caches[f"{unit.teacher}/{unit.task}"] = entry
        where = "object store" if "ref" in entry else "memory-mapped shards"
        log(
            f"teacher cache {unit.teacher}/{unit.task}: {human_bytes(report.bytes)}, "
            f"{'built' if report.built else 'found'}, served from the {where}"
        )
        if report.rebuilt_reason:
            log(f"  rebuilt because: {report.rebuilt_reason}")
        if not tracking.finished_run(client, exp_id, "teacher_cache", report.key):
            run = client.create_run(
                exp_id,
                run_name=f"cache-{unit.teacher}-{unit.task}",
                tags=_unit_tags(
                    spec.name, "teacher_cache", report.key, parent, task=unit.task, teacher=unit.teacher
                ),
            )
            rid = run.info.run_id
            tracking.log_params(
                client,
                rid,
                {
                    "signals": unit.spec.key(),
                    "dtype": spec.cache.dtype,
                    "ckd_layer_sets": [list(s) for s in unit.ckd_layer_sets],
                    "path": str(report.path),
                    "served_from": where,
                },
            )
            tracking.log_metrics(
                client,
                rid,
                {
                    "cache_bytes": report.bytes,
                    "build_seconds": report.seconds,
                    "teacher_passes": 1 if report.built else 0,
                },
            )
            cached = CachedTeacher.open(report.path)
            logits = cached.predictions("test")
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            labels = [ex.label for ex in load_data(unit.task, data, seed0, spec.max_samples).test]
            tracking.log_json_artifact(
                client,
                rid,
                {
                    "idx": list(range(len(labels))),
                    "label": labels,
                    "pred": probs.argmax(-1).tolist(),
                    "probs": np.round(probs, 5).tolist(),
                },
                "predictions",
                "test.json",
            )
            client.set_terminated(rid, "FINISHED")

    # 4. Student trials through Ray Tune; trials already FINISHED in MLflow are not run again.
    done = tracking.finished_keys(client, exp_id)
    todo = [t for t in plan.trials if t.trial_key not in done]
    log(
        f"stage student: {len(plan.trials)} trials, {len(plan.trials) - len(todo)} already finished, "
        f"{len(todo)} to run"
    )
    configs = []
    for t in todo:
        sshape = student_shape(t.student)
        shape = plan.teacher_shapes.get(t.teacher)
        train = student_train(spec, t.method)
        configs.append(
            {
                "trial_key": t.trial_key,
                "run_name": f"{t.task}-{t.student}-{t.method}-{t.teacher}-s{t.seed}",
                "tags": {**t.tags(spec.name), "mlflow.parentRunId": parent},
                "task": t.task,
                "student": t.student,
                "method": t.method,
                "seed": t.seed,
                "teacher": t.teacher,
                "teacher_dir": folders.get((t.teacher, t.task)),
                "data": data,
                "max_samples": spec.max_samples,
                "train": train,
                "method_params": spec.params_for(t.method),
                "teacher_mode": spec.teacher_mode,
                "cache_dir": str(storage / "cache"),
                "cpus": spec.trial_resources.cpu,
                "ckd_layers": [0, *layer_map(sshape.num_layers, shape.num_layers)] if shape else None,
                "params": {
                    **train,
                    **{f"method.{k}": v for k, v in spec.params_for(t.method).items()},
                    "task": t.task,
                    "teacher": t.teacher,
                    "student": t.student,
                    "method": t.method,
                    "seed": t.seed,
                    "data": data,
                    "max_samples": spec.max_samples,
                    "teacher_mode": spec.teacher_mode,
                },
            }
        )
    if configs:
        trainable = tune.with_parameters(
            student_trainable, caches=caches, tracking_uri=uri, experiment_id=exp_id, study=spec.name
        )
        r = spec.trial_resources
        trainable = tune.with_resources(trainable, {"cpu": r.cpu, "gpu": r.gpu})
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
                verbose=0,
            ),
        )
        tuner.fit()

    # 5. What MLflow holds now is the study's state. No trial runs any more: a run still RUNNING belonged to a
    # worker that died (e.g. its node was removed) and was retried elsewhere.
    tracking.mark_stale_running(
        client, exp_id, "its worker stopped before the trial ended; the trial was retried"
    )
    done = tracking.finished_keys(client, exp_id)
    planned = {t.trial_key for t in plan.trials}
    outcome.finished = len(planned & done)
    outcome.failed = [
        {"run": r.info.run_name, "error": r.data.tags.get("error", "")}
        for r in tracking.runs_by_stage(client, exp_id, "student", "FAILED")
        if r.data.tags.get("trial_key") not in done
    ]
    outcome.teacher_passes = int(
        sum(
            r.data.metrics.get("teacher_passes", 0)
            for r in tracking.runs_by_stage(client, exp_id, "teacher_cache", "FINISHED")
        )
    )
    tracking.log_metrics(
        client,
        parent,
        {
            "teacher_passes": outcome.teacher_passes,
            "trials_planned": len(planned),
            "trials_finished": outcome.finished,
        },
    )
    client.set_terminated(parent, "FINISHED" if outcome.complete else "FAILED")


def status(spec: StudySpec) -> dict[str, Any]:
    """Done, running, failed and remaining trials, from MLflow."""
    from mlflow.tracking import MlflowClient

    uri, _ = _tracking_uri(spec, start=False)
    client = MlflowClient(uri)
    plan = build_plan(spec.model_copy(update={"storage": str(Path(spec.storage).resolve())}))
    exp = client.get_experiment_by_name(spec.name)
    planned = {t.trial_key for t in plan.trials}
    if exp is None:
        return {
            "study": spec.name,
            "tracking_uri": uri,
            "planned": len(planned),
            "done": 0,
            "running": 0,
            "failed": 0,
            "remaining": len(planned),
            "failed_trials": [],
        }
    runs = tracking.runs_by_stage(client, exp.experiment_id, "student")
    done = {r.data.tags.get("trial_key") for r in runs if r.info.status == "FINISHED"} & planned
    running = [r for r in runs if r.info.status == "RUNNING"]
    failed = [r for r in runs if r.info.status == "FAILED" and r.data.tags.get("trial_key") not in done]
    return {
        "study": spec.name,
        "tracking_uri": uri,
        "planned": len(planned),
        "done": len(done),
        "running": len(running),
        "failed": len({r.data.tags.get("trial_key") for r in failed}),
        "remaining": len(planned - done),
        "failed_trials": [
            {
                "run": r.info.run_name,
                "trial_key": r.data.tags.get("trial_key"),
                "error": r.data.tags.get("error", ""),
            }
            for r in failed
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", help="a profile (smoke, local, full) or a study YAML file")
    p.add_argument("--plan", action="store_true", help="print what the study would run, run nothing")
    p.add_argument(
        "--status", action="store_true", help="done / running / failed / remaining trials from MLflow"
    )
    p.add_argument("--json", action="store_true", help="with --plan or --status: print JSON")
    p.add_argument(
        "--storage", help="where caches, checkpoints, MLflow (if started here) and Ray results live"
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start Ray here)")
    args = p.parse_args(argv)

    try:
        spec = load_spec(args.study, {"storage": args.storage} if args.storage else None)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.plan:
        plan = build_plan(spec)
        print(json.dumps(plan_dict(plan), indent=2) if args.json else describe(plan))
        return 0
    if args.status:
        st = status(spec)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(
                f"study {st['study']} ({st['tracking_uri']}): {st['done']}/{st['planned']} done, "
                f"{st['running']} running, {st['failed']} failed, {st['remaining']} remaining"
            )
            for f in st["failed_trials"]:
                print(f"  FAILED {f['run']}: {f['error']}")
        return 0

    outcome = run_study(spec, args.address)
    log(
        f"done: {outcome.finished}/{outcome.planned} trials FINISHED, {len(outcome.failed)} failed, "
        f"teacher passes made by this study: {outcome.teacher_passes}"
    )
    for f in outcome.failed:
        log(f"  FAILED {f['run']}: {f['error']}")
    log(f"MLflow UI: {outcome.ui_command}")
    return 0 if outcome.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
