"""The completion study's stages: teachers -> teacher caches -> trials on Ray Tune. Each skips what exists.

* teacher: written once into its content-keyed folder (a ``kdstudy_teacher.json`` marker says it is complete): a
  random GPT-2 with a BPE trained on the train split, or a hub/folder model with CodeXGLUE's tokens added; LM-trained
  first when its settings have ``train`` (the local profile's CPU pre-training). One MLflow run (``stage=teacher``).
* cache: one exact (or top-k) teacher pass per (teacher, data, kind) before any trial, through the very function the
  trials call (``lm_trial.teacher_source``), so the trials find it under the same key and never run the teacher.
* trials: every trial not yet FINISHED in MLflow, as one Tune grid (``completion_trial.completion_trainable``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.sweep import tracking
from orchestrator.sweep.completion_plan import CompletionPlan, CompletionTrial, LMTeacherUnit
from orchestrator.sweep.completion_spec import CompletionStudySpec, LMTeacherSettings
from orchestrator.sweep.stages import log

MARKER = "kdstudy_teacher.json"


def _make_teacher(t: LMTeacherSettings, texts: dict[str, list[str]], folder: Path) -> Any:
    """The teacher, before any training: random (own BPE) or loaded with CodeXGLUE's tokens added."""
    from models.lm_teacher import LMTeacher, create_random_gpt2_teacher
    from tasks.completion.preprocess import BOS, EOL, EOS, PAD, UNK, special_tokens
    from tasks.completion.tokenizer import build_bpe_tokenizer

    if t.random:
        tok = build_bpe_tokenizer(texts["train"], t.vocab)
        create_random_gpt2_teacher(folder, t.layers, t.hidden, t.heads, t.positions, t.vocab, tokenizer=tok)
        return LMTeacher.load(folder)
    teacher = LMTeacher.load(t.source, trust_remote_code=t.trust_remote_code)
    added = teacher.add_special_tokens([BOS, EOS, EOL, PAD, UNK, *special_tokens()])
    log(f"teacher {t.name}: {added} CodeXGLUE tokens added, vocabulary {teacher.vocab_size}")
    return teacher


def materialise_teacher(
    unit: LMTeacherUnit, t: LMTeacherSettings, texts: dict[str, list[str]], spec: CompletionStudySpec
) -> tuple[dict[str, Any], bool]:
    """The teacher folder's record, and whether this call built it."""
    from kd_methods import build_method
    from orchestrator.train.lm_trainer import LMTrainConfig, train_lm
    from orchestrator.train.lm_trial import tokenise

    folder = Path(unit.folder)
    if (folder / MARKER).is_file():
        return json.loads((folder / MARKER).read_text()), False
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    teacher = _make_teacher(t, texts, tmp)
    record: dict[str, Any] = {
        "key": unit.key,
        "source": t.source,
        "params": sum(p.numel() for p in teacher.parameters()),
    }
    if t.train is not None:
        blocks = tokenise(teacher, texts, min(spec.block_size, teacher.max_positions))
        method = build_method("distil", teacher.shape, teacher.shape, alpha_ce=0.0, alpha_cos=0.0)
        cfg = LMTrainConfig(**t.train.model_dump(), device=spec.device)
        result = train_lm(teacher, method, blocks, cfg)
        record.update(best_val_ppl=result.best_val_ppl, history=result.history, steps=result.steps)
        log(
            f"teacher {t.name}: LM-trained {result.steps} steps, validation perplexity {result.best_val_ppl:.2f}"
        )
    teacher.save(tmp)
    record["seconds"] = time.perf_counter() - start
    (tmp / MARKER).write_text(json.dumps(record, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return record, True


def score_teacher(folder: str, lines: list[dict], spec: CompletionStudySpec) -> dict[str, float]:
    """The teacher's own line-completion scores, size and speed: the poster's baseline row."""
    from models.gpt2_student import model_size_mb
    from models.lm_teacher import LMTeacher
    from orchestrator.sweep.completion_run import score_generation
    from orchestrator.train.trainer import resolve_device

    teacher = LMTeacher.load(folder).to(resolve_device(spec.device))
    test = score_generation(teacher.model, teacher.tokenizer, lines, spec.generation.model_dump())
    return {
        "test_es": test["es"],
        "test_em": test["em"],
        "test_score": test["es"],
        "model_mb": model_size_mb(teacher.model),
        "inference_samples_per_s": test["samples_per_s"],
        "generated_tokens_per_s": test["tokens_per_s"],
    }


def build_teacher(
    unit: LMTeacherUnit, t: LMTeacherSettings, data: str, caps: dict, spec: CompletionStudySpec
) -> tuple[dict[str, Any], bool, dict[str, float]]:
    """Materialise one teacher and, when this call built it, score it (its record, built, its scores)."""
    from orchestrator.sweep.completion_run import load_data

    texts, lines = load_data(data, caps)
    record, built = materialise_teacher(unit, t, texts, spec)
    return record, built, score_teacher(unit.folder, lines, spec) if built else {}


def on_teacher_node(spec: CompletionStudySpec, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` where teachers run: a Ray task with ``teacher_resources`` when they ask for a GPU (the
    driver of a GPU cluster may have none), else here in the driver."""
    if spec.teacher_resources.gpu <= 0:
        return fn(*args)
    import ray

    r = spec.teacher_resources
    return ray.get(ray.remote(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=0)(fn).remote(*args))


def stage_teachers(
    spec: CompletionStudySpec, plan: CompletionPlan, client: Any, exp_id: str, parent: str
) -> None:
    """Materialise every teacher; a new one gets a ``stage=teacher`` run with its own test scores."""
    settings = {t.name: t for t in spec.teachers}
    caps = spec.max_files.model_dump()
    for unit in plan.teachers:
        record, built, scores = on_teacher_node(
            spec, build_teacher, unit, settings[unit.name], plan.data, caps, spec
        )
        log(f"stage teacher {unit.name}: {'built' if built else 'exists'} ({unit.folder})")
        if not built:
            continue
        tags = {"stage": "teacher", "study": spec.name, "task": "completion", "teacher": unit.name,
                "teacher_key": unit.key, "codexglue_version": plan.codexglue_version, "mlflow.parentRunId": parent}  # fmt: skip
        run = client.create_run(exp_id, run_name=f"teacher-{unit.name}", tags=tags)
        tracking.log_params(client, run.info.run_id, {"source": unit.source, "folder": unit.folder})
        metrics = {"teacher_params": record["params"], "build_seconds": record["seconds"], **scores}
        if "best_val_ppl" in record:
            metrics["best_val_ppl"] = record["best_val_ppl"]
        tracking.log_metrics(client, run.info.run_id, metrics)
        client.set_terminated(run.info.run_id, "FINISHED")


def trial_config(
    spec: CompletionStudySpec, plan: CompletionPlan, t: CompletionTrial, parent: str
) -> dict[str, Any]:
    """What one trial's Tune worker needs."""
    folder = next(u.folder for u in plan.teachers if u.name == t.teacher)
    params = spec.params_for(t.method, t.teacher_mode)
    flat = {
        **spec.student_train.model_dump(),
        **{f"method.{k}": v for k, v in params.items()},
        "teacher": t.teacher, "student": t.student, "student_init": t.student_init, "teacher_mode": t.teacher_mode,
        "method": t.method, "seed": t.seed, "data": plan.data, "block_size": spec.block_size,
        **{f"max_files.{k}": v for k, v in spec.max_files.model_dump().items()},
        **{f"generation.{k}": v for k, v in spec.generation.model_dump().items()},
    }  # fmt: skip
    if t.teacher_mode == "in_training":
        flat.update({f"teacher_train.{k}": v for k, v in spec.teacher_train.model_dump().items()})
    return {
        "trial_key": t.trial_key,
        "run_name": t.run_name,
        "tags": {**t.tags(spec.name, plan.codexglue_version), "mlflow.parentRunId": parent},
        "teacher": t.teacher,
        "teacher_dir": folder,
        "student": t.student,
        "student_init": t.student_init,
        "teacher_mode": t.teacher_mode,
        "method": t.method,
        "seed": t.seed,
        "method_params": params,
        "block_size": spec.block_size,
        "data": plan.data,
        "caps": spec.max_files.model_dump(),
        "cache_storage": str(Path(spec.storage).resolve() / "completion-cache"),
        "cache": spec.cache.model_dump(),
        "online_dtype": spec.online_dtype,
        "train": spec.student_train.model_dump(),
        "teacher_train": spec.teacher_train.model_dump(),
        "generation": spec.generation.model_dump(),
        "device": spec.device,
        "cpus": spec.trial_resources.cpu,
        "params": flat,
    }


def build_cache(trial: dict[str, Any]) -> bool:
    """The cache ``trial`` reads, built through the trials' own ``teacher_source``; True when this call built it."""
    from models.lm_teacher import LMTeacher
    from orchestrator.cache.build import cache_root
    from orchestrator.sweep.completion_run import lm_trial_config, load_data
    from orchestrator.train.lm_trial import teacher_source, tokenise

    texts, _ = load_data(trial["data"], trial["caps"])
    cfg = lm_trial_config(trial, texts)
    root = cache_root(cfg.storage)
    before = set(os.listdir(root)) if root.is_dir() else set()
    teacher = LMTeacher.load(cfg.teacher)
    teacher_source(cfg, teacher, tokenise(teacher, texts, min(cfg.block_size, teacher.max_positions)))
    return bool(set(os.listdir(root)) - before)


def stage_caches(spec: CompletionStudySpec, plan: CompletionPlan, todo: list[dict[str, Any]]) -> int:
    """Build every cache a pending cached trial needs, once; returns the teacher passes made."""
    passes = 0
    for unit in plan.caches:
        pending = [c for c in todo if c["teacher"] == unit.teacher and c["teacher_mode"] == unit.mode]
        if not pending:
            log(f"stage cache {unit.teacher}/{unit.mode}: no pending trial needs it")
            continue
        t0 = time.perf_counter()
        built = on_teacher_node(spec, build_cache, pending[0])
        passes += built
        log(
            f"stage cache {unit.teacher}/{unit.mode}: {'built' if built else 'exists'} ({time.perf_counter() - t0:.1f} s)"
        )
    return passes


def stage_trials(spec: CompletionStudySpec, configs: list[dict[str, Any]], uri: str, exp_id: str) -> None:
    from ray import tune

    from orchestrator.sweep.completion_trial import completion_trainable
    from orchestrator.sweep.students import Progress

    trainable = tune.with_parameters(completion_trainable, tracking_uri=uri, experiment_id=exp_id)
    r = spec.trial_resources
    trainable = tune.with_resources(trainable, {"cpu": r.cpu, "gpu": r.gpu})
    name = lambda trial: f"{trial.trial_id}-{trial.config['trial']['run_name']}"[:120]  # noqa: E731
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,
            trial_name_creator=name,
            trial_dirname_creator=name,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((Path(spec.storage) / spec.name / "ray_results").resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[Progress(len(configs), spec.max_concurrent_trials)],
            verbose=0,
        ),
    )
    tuner.fit()
