"""A classification study's teacher stages, run in this order by ``run.run_stages`` before its trials: tokenizers,
teacher fine-tuning, teacher caches. A stage skips what exists and records its units in MLflow; the fine-tunes and
cache builds run as Ray tasks on the cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.device import cache_precision
from orchestrator.core.log import log
from orchestrator.core.paths import exclusive, teacher_complete
from orchestrator.core.progress import clear, progress_dir, wait_logging
from orchestrator.design.units import CacheUnit, TeacherUnit, slot
from orchestrator.sweep.context import StudyContext
from orchestrator.sweep.teacher_sources import teacher_sources
from orchestrator.sweep.trial import register_tasks


def teacher_stages(ctx: StudyContext) -> None:
    clear(progress_dir(ctx.spec.storage, ctx.spec.name))  # what a killed driver's units left
    stage_tokenizers(ctx)
    stage_teacher_finetune(ctx)
    stage_teacher_cache(ctx)
    clear(progress_dir(ctx.spec.storage, ctx.spec.name))  # every unit has ended


# ---------------------------------------------------------------------------------------------------------------
# Stage work that runs on the cluster (Ray tasks)


def finetuned(folder: str | Path) -> dict[str, Any] | None:
    """A complete fine-tuned teacher folder's result as ``_finetune_unit`` returns it (its summary and test
    predictions); None while the folder lacks ``finetune.json``, its weights or its tokenizer."""
    root = Path(folder)
    if not ((root / "finetune.json").exists() and teacher_complete(root)):
        return None
    preds = root / "test_predictions.json"
    summary = json.loads((root / "finetune.json").read_text())
    return {"summary": summary, "predictions": json.loads(preds.read_text()) if preds.exists() else None}


def _finetune_unit(
    declared: list[dict[str, Any]],
    teacher_source: str,
    task: str,
    folder: str,
    data: str,
    train: dict[str, Any],
    max_samples: int | None,
    trust_remote_code: bool,
    cpus: float,
    progress: str | None = None,
    data_seed: int = 0,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import torch

    from orchestrator.core.progress import StageProgress
    from orchestrator.train.finetune import finetune_teacher
    from orchestrator.train.trainer import TrainConfig
    from tasks import get_task

    register_tasks(declared)
    torch.set_num_threads(max(1, int(cpus)))
    cfg = TrainConfig(**{k: v for k, v in train.items() if k != "max_length"})
    # each epoch into <study>/progress/, which the driver prints and --status shows (core/progress.py)
    state = StageProgress(
        Path(progress or Path(folder).parent / "progress"),
        "teacher fine-tune",
        f"{task}/{Path(folder).name}",
        cfg.epochs,
    )
    # Another study on this storage may fine-tune the same teacher (the same key) now: wait for it and use its
    # folder, rather than fine-tune it again and replace the folder while that study's cache reads it.
    with exclusive(folder):
        found = finetuned(folder)
        if found is not None:
            state.close()
            return found
        try:
            out = finetune_teacher(
                teacher_source, task, Path(folder), data, cfg, train["max_length"], max_samples, trust_remote_code,
                state.epoch_callback(get_task(task).headline_metric), data_seed, labels,
            )  # fmt: skip
        finally:
            state.close()
    # finetune.json: the result summary and train_samples (the labelled part), as a found teacher reads it
    summary = json.loads((out.folder / "finetune.json").read_text())
    return {"summary": summary, "predictions": out.result.test_predictions}


def _build_cache_unit(
    declared: list[dict[str, Any]], request: Any, task: str, data: str, data_seed: int, max_samples: int | None,
    storage: str, gpus: float, progress: str | None = None, unit: str = "",
) -> Any:  # fmt: skip
    from orchestrator.cache.build import get_or_build
    from orchestrator.core.progress import StageProgress
    from orchestrator.train.trial import load_data
    from tasks import get_task
    from tasks.labels import study_inputs

    register_tasks(declared)
    state = StageProgress(
        Path(progress or Path(storage) / "progress"), "cache build", unit or task, 0, "shards"
    )
    state.update(0)  # encoding the splits comes first: the stage and its elapsed time

    def shards_done(done: int, total: int) -> None:
        state.total = total
        state.update(done)

    try:
        # every training input, labelled or not (row i = sample i of a KD trial's training split)
        task_data = study_inputs(load_data(task, data, data_seed, max_samples), get_task(task), max_samples)
        return get_or_build(
            request, task_data, get_task(task).num_labels, storage, use_ray=True, gpus_per_task=gpus,
            progress=shards_done,
        )  # fmt: skip
    finally:
        state.close()


# ---------------------------------------------------------------------------------------------------------------
# 1. Tokenizers


def stage_tokenizers(ctx: StudyContext) -> None:
    from orchestrator.train.trial import family_tokenizer
    from tasks import get_task

    spec, plan, data = ctx.spec, ctx.plan, ctx.plan.data
    storage = Path(spec.storage)
    data_seed = spec.data_seed  # the study's data seed: the same sample and tokenizers for every trial

    # One per (task family, vocabulary size), cached on disk.
    for family, vocab in plan.families:
        task = next(t for t in spec.tasks if get_task(t).family == family)
        family_tokenizer(task, vocab, data, storage / "cache" / "tokenizers", data_seed, spec.max_samples)
    log(f"stage tokenizers: {len(plan.families)} ready")


# ---------------------------------------------------------------------------------------------------------------
# 2. Teacher fine-tuning


def stage_teacher_finetune(ctx: StudyContext) -> None:
    """Teacher fine-tuning per (teacher, task), as Ray tasks on the cluster; each recorded once in MLflow."""
    import ray

    spec, plan, data = ctx.spec, ctx.plan, ctx.plan.data
    todo = [unit for unit in plan.teachers if finetuned(unit.folder) is None]
    teachers, sources = teacher_sources(spec, data, {unit.teacher for unit in todo})
    res = spec.teacher_resources
    # A Ray task's max_retries covers system failures only (a lost node or worker; an exception in the fine-tune
    # itself is not retried), so a node loss must not find it at max_failures: 0 (sweep/node_loss.py).
    retries = max(3, spec.max_failures)
    finetune = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=retries)(_finetune_unit)
    pending = {}
    for unit in todo:
        t = teachers[unit.teacher]
        pending[unit] = finetune.remote(
            spec.custom_tasks,
            sources[unit.teacher],
            unit.task,
            unit.folder,
            data,
            # precision: an execution setting beside the recipe (not in the teacher's key)
            {**spec.teacher_train_for(unit.teacher).model_dump(), "precision": spec.precision},
            spec.max_samples,
            t.trust_remote_code,
            res.cpu,
            str(progress_dir(spec.storage, spec.name)),
            spec.data_seed,
            _level(spec, unit.labels),
        )
    if pending:
        log(f"stage teacher_finetune: {len(pending)} to run, {len(plan.teachers) - len(pending)} found")
    for unit in plan.teachers:
        # A teacher being fine-tuned (again: its folder was deleted) is waited for, recorded or not: the caches
        # read it next.
        out = (
            wait_logging(pending[unit], progress_dir(spec.storage, spec.name), log)
            if unit in pending
            else None
        )
        if tracking.finished_run(ctx.client, ctx.experiment_id, "teacher_finetune", unit.key):
            continue
        _record_finetune(ctx, unit, out or finetuned(unit.folder), teachers)
    log(f"stage teacher_finetune: {len(plan.teachers)} teachers ready")


def _level(spec: Any, name: str) -> dict[str, Any] | None:
    """A labels level's ``LabelSpec`` mapping (None: every label)."""
    labels = spec.label_levels()[name]
    return labels.to_dict() if labels is not None else None


def _record_finetune(
    ctx: StudyContext, unit: TeacherUnit, out: dict[str, Any], teachers: dict[str, Any]
) -> None:
    spec, client = ctx.spec, ctx.client
    run = client.create_run(
        ctx.experiment_id,
        run_name=f"teacher-{unit.teacher}-{unit.task}" + (f"-{unit.labels}" if unit.labels != "all" else ""),
        tags=ctx.unit_tags(
            "teacher_finetune", unit.key, task=unit.task, teacher=unit.teacher, labels=unit.labels
        ),
    )
    rid = run.info.run_id
    t = teachers[unit.teacher]
    tracking.log_params(
        client,
        rid,
        {
            "source": t.source,
            "folder": unit.folder,
            "data_seed": spec.data_seed,
            **spec.teacher_train_for(unit.teacher).model_dump(),
            "train_override": json.dumps(t.train.model_dump(exclude_none=True)) if t.train else "none",
            "labels": unit.labels,
            "train_samples": out["summary"].get("train_samples", ""),
        },
    )
    for row in out["summary"].get("history", []):
        tracking.log_metrics(client, rid, {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
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


# ---------------------------------------------------------------------------------------------------------------
# 3. Teacher caches


def stage_teacher_cache(ctx: StudyContext) -> None:
    """One teacher pass per (teacher, task), shared by every trial: where each trial finds its cache goes into
    ``ctx.caches`` (by ``"<teacher>/<task>"``), the caches' keys into ``ctx.cache_keys``."""
    import ray

    from orchestrator.cache.key import CacheRequest, human_bytes
    from orchestrator.cache.serve import fits_object_store, put_in_object_store
    from orchestrator.cache.spread import cls_pairwise_cos, constant_target_warning

    spec, plan, data = ctx.spec, ctx.plan, ctx.plan.data
    storage = Path(spec.storage)
    data_seed = spec.data_seed
    res = spec.teacher_resources
    caches: dict[str, Any] = {}
    folders = {(u.teacher, u.task, u.labels): u.folder for u in plan.teachers}
    for unit in plan.caches:
        folder = folders[(unit.teacher, unit.task, unit.labels)]
        request = CacheRequest(
            folder, unit.task, unit.spec, spec.student_train.max_length, spec.cache.dtype, unit.derived,
            precision=cache_precision(spec.precision),
        )  # fmt: skip
        build = ray.remote(num_cpus=0)(_build_cache_unit)
        args = (spec.custom_tasks, request, unit.task, data, data_seed, spec.max_samples, str(storage), res.gpu)  # fmt: skip
        progress = str(progress_dir(spec.storage, spec.name))
        where = slot(unit.teacher, unit.task, unit.labels)
        report = wait_logging(build.remote(*args, progress, where), progress, log)
        shape = plan.teacher_shapes[unit.teacher]
        entry: dict[str, Any] = {
            "path": str(report.path),
            "key": report.key,
            "shape": [shape.num_layers, shape.hidden_size],
        }
        held = sum(caches[w]["bytes"] for w in caches if caches[w].get("ref") is not None)
        if fits_object_store(report.bytes, spec.cache.object_store_share, held):
            entry["ref"] = put_in_object_store(report.path)
        entry["bytes"] = report.bytes
        caches[where] = entry
        log(
            f"teacher cache {where}: {human_bytes(report.bytes)}, "
            f"{'built' if report.built else 'found'}, served from the {_served(entry)}"
        )
        if report.rebuilt_reason:
            log(f"  rebuilt because: {report.rebuilt_reason}")
        spread = cls_pairwise_cos(report.path)  # PKD's targets: do they differ between inputs at all?
        if warning := constant_target_warning(where, spread):
            log(warning)
        if not tracking.finished_run(ctx.client, ctx.experiment_id, "teacher_cache", report.key):
            _record_cache(ctx, unit, report, _served(entry), spread)
    ctx.caches, ctx.cache_keys = caches, {c["key"] for c in caches.values()}


def _served(entry: dict[str, Any]) -> str:
    return "object store" if "ref" in entry else "memory-mapped shards"


def _record_cache(
    ctx: StudyContext, unit: CacheUnit, report: Any, where: str, spread: dict[int, float]
) -> None:
    import numpy as np

    from orchestrator.cache.serve import CachedTeacher
    from orchestrator.train.trainer import label_names
    from orchestrator.train.trial import load_data
    from tasks import get_task

    spec, client, data = ctx.spec, ctx.client, ctx.plan.data
    data_seed = spec.data_seed
    run = client.create_run(
        ctx.experiment_id,
        run_name=f"cache-{unit.teacher}-{unit.task}" + (f"-{unit.labels}" if unit.labels != "all" else ""),
        tags=ctx.unit_tags(
            "teacher_cache", report.key, task=unit.task, teacher=unit.teacher, labels=unit.labels
        ),
    )
    rid = run.info.run_id
    tracking.log_params(
        client,
        rid,
        {
            "signals": unit.spec.key(),
            "dtype": spec.cache.dtype,
            **{f"derived.{d.kind}": [list(s) for s in d.layer_sets] for d in unit.derived},
            "path": str(report.path),
            "served_from": where,
            "labels": unit.labels,
        },
    )
    tracking.log_metrics(
        client,
        rid,
        {
            "cache_bytes": report.bytes,
            "build_seconds": report.seconds,
            "teacher_passes": 1 if report.built else 0,
            **{f"cls_pairwise_cos.{layer}": cos for layer, cos in spread.items()},
        },
    )
    cached = CachedTeacher.open(report.path)
    logits = cached.predictions("test")
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = [ex.label for ex in load_data(unit.task, data, data_seed, spec.max_samples).test]
    task = get_task(unit.task)
    headline = task.headline(task.metrics(logits.astype(np.float32), np.asarray(labels)), labels)
    tracking.log_metrics(client, rid, {f"test_{k}": v for k, v in headline.items()})
    preds = {
        "idx": list(range(len(labels))),
        "label": labels,
        "pred": probs.argmax(-1).tolist(),
        "probs": np.round(probs, 5).tolist(),
    }
    preds.update(label_names(preds, task.label_names))
    tracking.log_json_artifact(client, rid, preds, "predictions", "test.json")
    client.set_terminated(rid, "FINISHED")
