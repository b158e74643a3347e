"""A completion study's teacher stages, run by ``run.run_stages`` before its trials. Each skips what exists.

* teacher: written once into its content-keyed folder (``train/lm_teacher_build.py``): a random GPT-2 with a BPE
  trained on the train split, or a hub/folder model with CodeXGLUE's tokens added; LM-trained first when its
  settings have ``train``. A new one gets one MLflow run (``stage=teacher``) with its own test scores.
* cache: one exact (or top-k) teacher pass per (teacher, data, kind) before any trial, for the cached trials still
  to run, through the very function the trials call, so they find it under the same key and never run the teacher.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.log import log
from orchestrator.core.paths import stable_key
from orchestrator.sweep.context import StudyContext


def teacher_stages(ctx: StudyContext) -> None:
    stage_teachers(ctx)
    stage_caches(ctx)


def on_teacher_node(spec: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` where teachers run: a Ray task with ``teacher_resources`` when they ask for a GPU (the
    driver of a GPU cluster may have none), else here in the driver."""
    if spec.teacher_resources.gpu <= 0:
        return fn(*args)
    import ray

    r = spec.teacher_resources
    return ray.get(ray.remote(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=0)(fn).remote(*args))


def teacher_score_key(teacher_key: str, data_key: str) -> str:
    """A completion teacher's ``stage=teacher`` run holds its scores on one data key's line set."""
    return stable_key({"teacher": teacher_key, "data": data_key})


def stage_teachers(ctx: StudyContext) -> None:
    """Materialise every teacher; one without a FINISHED ``stage=teacher`` run in this study's experiment gets one
    with its own test scores (also a teacher that already existed: saved by a driver killed before it recorded
    the run, or built by another study in the same storage)."""
    from orchestrator.train.lm_teacher_build import build_teacher

    spec, plan = ctx.spec, ctx.plan
    settings = {t.name: t for t in spec.teachers}
    caps, generation = spec.max_files.model_dump(), spec.generation.model_dump()
    for unit in plan.teachers:
        args = (
            unit.folder,
            unit.key,
            settings[unit.name],
            plan.data,
            caps,
            spec.block_size,
            generation,
            spec.device,
        )
        # its scores on this line set: another line set (new data key) scores the same teacher again
        score_key = teacher_score_key(unit.key, plan.data_key)
        recorded = (
            tracking.finished_run(ctx.client, ctx.experiment_id, "teacher", score_key, "score_key")
            is not None
        )
        record, built, scores = on_teacher_node(spec, build_teacher, *args, not recorded)  # score it then
        log(f"stage teacher {unit.name}: {'built' if built else 'exists'} ({unit.folder})")
        if recorded and not built:
            continue
        tags = {"stage": "teacher", "study": spec.name, "task": "completion", "teacher": unit.name,
                "teacher_key": unit.key, "score_key": score_key, "data_key": plan.data_key,
                "codexglue_version": plan.codexglue_version, "mlflow.parentRunId": ctx.parent}  # fmt: skip
        run = ctx.client.create_run(ctx.experiment_id, run_name=f"teacher-{unit.name}", tags=tags)
        tracking.log_params(ctx.client, run.info.run_id, {"source": unit.source, "folder": unit.folder})
        metrics = {"teacher_params": record["params"], **scores}
        if built:  # only where this driver built it: spent hours (cost.spent) count each build once
            metrics["build_seconds"] = record["seconds"]
        if "best_val_ppl" in record:
            metrics["best_val_ppl"] = record["best_val_ppl"]
        tracking.log_metrics(ctx.client, run.info.run_id, metrics)
        ctx.client.set_terminated(run.info.run_id, "FINISHED")


def stage_caches(ctx: StudyContext) -> None:
    """Build every cache a pending cached trial needs, once; the teacher passes made go into the outcome."""
    from orchestrator.train.lm_teacher_build import build_cache

    done = ctx.finished_keys()
    todo = [t for t in ctx.plan.trials if t.trial_key not in done]
    for unit in ctx.plan.caches:
        pending = [t for t in todo if t.teacher == unit.teacher and t.teacher_mode == unit.mode]
        if not pending:
            log(f"stage cache {unit.teacher}/{unit.mode}: no pending trial needs it")
            continue
        t0 = time.perf_counter()
        built, key = on_teacher_node(ctx.spec, build_cache, pending[0].work)
        ctx.outcome.teacher_passes += int(built)
        # stage_finish recounts the passes of these caches from their log: a killed driver's passes too
        ctx.cache_storage = pending[0].work.trial.storage
        ctx.cache_keys = {*(ctx.cache_keys or ()), key}
        log(
            f"stage cache {unit.teacher}/{unit.mode}: {'built' if built else 'exists'} ({time.perf_counter() - t0:.1f} s)"
        )
