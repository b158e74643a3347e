"""``--calibrate`` for a completion study: a few steps of the real LM training loop (``lm_trainer.train_lm``) per
distinct (student, teacher shape, teacher mode, block size, batch), warm-up excluded, on random token blocks.

The teacher is a random-weight GPT-2 of the teacher's shape (layers, width, vocabulary, positions), written once per
shape under the study's scratch folder (under ``--storage``, removed afterwards); a cached mode reads an LM cache of
those blocks built there (exact or top-k, as the trial would), online and in-training modes run that teacher every
step, ``lm_only`` reads no teacher. The student's forward passes are timed as in ``calibrate.py`` (``step_clock.StepClock``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.design.calibration import lm_plan_units


def lm_units(plan: Any) -> dict[str, dict[str, Any]]:
    """What to measure, by calibration key: every distinct LM training step of the plan."""
    heads = {t.name: t.heads for t in plan.spec.teachers if t.random}
    units = {}
    for key, info, trial in lm_plan_units(plan):
        units[key] = {**info, "heads": heads.get(trial.teacher) or max(1, info["hidden"] // 64)}
    return units


def _teacher_folder(u: dict[str, Any]) -> Path:
    """A random GPT-2 of the unit's teacher shape under the calibration's work folder, written once."""
    from models.lm_teacher import create_random_gpt2_teacher

    folder = Path(u["work"]) / f"teacher-{u['layers']}x{u['hidden']}v{u['vocab']}p{u['positions']}"
    if not (folder / "config.json").is_file():
        create_random_gpt2_teacher(
            folder, u["layers"], u["hidden"], u["heads"], u["positions"], u["vocab"], dropout=0.0
        )
    return folder


def _blocks(n: int, block: int, vocab: int, seed: int) -> Any:
    import torch

    from orchestrator.train.lm_data import LMBlocks

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, block), generator=gen)
    return LMBlocks(ids, torch.ones_like(ids))


def time_lm_student(u: dict[str, Any]) -> dict[str, Any]:
    """One LM unit: ``warmup + steps`` steps of ``train_lm``; seconds per step and per evaluated block."""
    from kd_methods import build_method
    from models.gpt2_student import build_gpt2_student
    from models.lm_teacher import LMTeacher
    from orchestrator.core.device import resolve_device
    from orchestrator.design.step_clock import StepClock
    from orchestrator.train.lm_trainer import LMTrainConfig, train_lm
    from orchestrator.train.lm_trial import LMTrialConfig, teacher_source

    batch, block = u["batch_size"], u["block_size"]
    teacher = LMTeacher.load(_teacher_folder(u))
    blocks = {
        "train": _blocks((u["warmup"] + u["steps"]) * batch, block, teacher.vocab_size, 0),
        "validation": _blocks(batch, block, teacher.vocab_size, 1),
    }
    student = build_gpt2_student(u["student"], teacher.model, "random")
    method = build_method("distil", student.shape, teacher.shape, **u["method_params"])
    cfg = LMTrainConfig(
        epochs=1,
        batch_size=batch,
        eval_batch_size=batch,
        max_steps=u["warmup"] + u["steps"],
        device=u["device"],
        amp=u.get("amp"),  # timed as the trial runs: bf16 autocast when the study asks for it
    )
    source = None
    if not method.signals().empty:
        trial = LMTrialConfig(
            teacher=str(_teacher_folder(u)), teacher_mode=u["mode"], texts={}, storage=str(Path(u["work"]) / "cache"),
            cache_dtype=u["cache_dtype"], topk=u["topk"], method_params=u["method_params"], train=cfg,
            online_dtype=u.get("online_dtype", "float32"),
        )  # fmt: skip
        source, _ = teacher_source(trial, teacher, blocks)
    clock = StepClock(student, resolve_device(u["device"]).type == "cuda")
    try:
        train_lm(student, method, blocks, cfg, source)
    finally:
        clock.close()
    step_s, timed = clock.step_seconds(u["warmup"])
    return {"step_s": step_s, "eval_sample_s": clock.evals[-1] / batch, "steps_timed": timed}
