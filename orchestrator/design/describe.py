"""What ``--plan`` prints, for either kind: ``describe`` (text) and ``plan_dict`` (the JSON of ``--plan --json``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from orchestrator.cache.key import human_bytes
from orchestrator.design.calibration import estimate_line
from orchestrator.design.completion_plan import ASSUMED_FLOPS, CompletionPlan, gpt2_params


def describe(plan: Any) -> str:
    return describe_completion(plan) if isinstance(plan, CompletionPlan) else describe_classification(plan)


def plan_dict(plan: Any) -> dict[str, Any]:
    return completion_dict(plan) if isinstance(plan, CompletionPlan) else classification_dict(plan)


def describe_classification(plan: Any) -> str:
    c = plan.counts()
    lines = [
        f"study '{plan.spec.name}': {plan.spec.description}".rstrip(": "),
        f"  tokenizers          {c['stages']['tokenizers']:>6}",
        f"  teacher fine-tunes  {c['teacher_finetunes']:>6}",
        f"  teacher passes      {c['teacher_passes']:>6}   (one cache build per teacher x task)",
        f"  student trials      {c['trials']:>6}   "
        + ", ".join(f"{m}: {n}" for m, n in c["trials_by_method"].items()),
        f"  cache size (est.)   {human_bytes(c['cache_bytes']):>10}",
        f"  GPU-hours (est.)    {c['gpu_hours']:>10.2f}   {estimate_line(plan)}",
    ]
    lines[5:5] = labels_lines(c["labels"])
    if len(c["labels"]["levels"]) > 1:  # a teacher is fine-tuned, and its cache built, per labels level
        lines[2:4] = [
            line.replace("per teacher x task", "per teacher x task x labels level") for line in lines[2:4]
        ]
    tc = c["tuning"]
    if tc:
        lines[4] = lines[4].replace("student trials", "final trials  ")
        lines += [
            f"  tuning trials       {tc['trials']:>6}   ({tc['cells']} cells x {tc['samples_per_cell']} samples, "
            f"{tc['searcher']} + {tc['scheduler']}, at most {tc['max_epochs']} epochs each)",
            f"  tuning GPU-hours    {tc['gpu_hours']:>10.2f}   (upper bound: every trial to max_epochs)",
            f"  total GPU-hours     {c['total_gpu_hours']:>10.2f}   (teachers + final trials + tuning)",
        ]
    lines += [f"  note: {n}" for n in c["notes"]]
    return "\n".join(lines)


def labels_lines(factor: dict[str, Any]) -> list[str]:
    """The labels factor (tasks/labels.py) when a study has one, or unlabelled inputs: each level's trials and,
    per task, its labelled and unlabelled training inputs."""
    from tasks.labels import regime

    samples = factor["samples"]
    if factor["levels"] == ["all"] and not any(s["all"]["unlabelled"] for s in samples.values()):
        return []
    lines = [
        f"  labels levels       {len(factor['levels']):>6}   (FT and teachers: labelled; KD: every input)"
    ]
    for name in factor["levels"]:
        per_task = "; ".join(f"{task} {regime(**s[name])}" for task, s in samples.items())
        lines.append(f"    {name:<17} {factor['trials'][name]:>6}   trials; {per_task}")
    return lines


def classification_dict(plan: Any) -> dict[str, Any]:
    out = plan.counts()
    out["calibration"] = plan.calibration or None  # device, measured_at, units, uncovered (when calibrated)
    out["caches"] = [
        {
            "teacher": u.teacher,
            "task": u.task,
            "signals": u.spec.to_dict(),
            # what methods read in place of token states, per derived signal (CKD: its layer maps)
            "derived": {d.kind: [list(s) for s in d.layer_sets] for d in u.derived},
            "planned": u.planned,
        }
        for u in plan.caches
    ]
    return out


def completion_dict(plan: CompletionPlan) -> dict[str, Any]:
    modes: dict[str, int] = {}
    for t in plan.trials:
        modes[t.teacher_mode] = modes.get(t.teacher_mode, 0) + 1
    return {
        "study": plan.spec.name,
        "task": "completion",
        "data": plan.data,
        "codexglue_version": plan.codexglue_version,
        "train_tokens_estimate": plan.train_tokens,
        "teachers": [asdict(u) for u in plan.teachers],
        "caches": [asdict(c) for c in plan.caches],
        "trials": len(plan.trials),
        "trials_by_teacher_mode": modes,
        "device": plan.device,
        "assumed_flops_per_s": ASSUMED_FLOPS[plan.device],
        "estimate_hours": {k: round(v, 5) for k, v in plan.totals.items()},
        "estimate": plan.estimate,  # flops, or calibrated (--calibrate: measured LM steps on this device)
        "calibration": plan.calibration or None,
        "notes": plan.notes,
        "trial_keys": [t.trial_key for t in plan.trials],
    }


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.1f} s"


def describe_completion(plan: CompletionPlan) -> str:
    d = completion_dict(plan)
    teachers = ", ".join(
        f"{u.name} ({u.shape[0]}x{u.shape[1]}, {gpt2_params(*u.shape) / 1e6:.1f}M{', LM-trained first' if u.trains else ''})"
        for u in plan.teachers
    )
    est = {k: _duration(v) for k, v in plan.totals.items()}
    return "\n".join(
        [
            f"completion study {plan.spec.name}: {len(plan.trials)} trials "
            f"({', '.join(f'{k} {v}' for k, v in d['trials_by_teacher_mode'].items())})",
            f"data {plan.data} ({plan.codexglue_version}; about {plan.train_tokens:,} train tokens)",
            f"teachers: {teachers}",
            f"teacher caches: {len(plan.caches)} (one pass each, shared by every cached trial; in_training runs online)",
            f"students {plan.spec.students} x init {plan.spec.student_init} x methods {plan.spec.methods} x "
            f"seeds {plan.spec.seeds}",
            f"estimated cost on {plan.device} {_basis(plan, d)}: teacher training "
            f"{est['teacher_train_hours']}, caches {est['cache_hours']}, trials {est['trial_hours']} in all, about "
            f"{est['wall_hours']} wall with {plan.spec.max_concurrent_trials} concurrent trials (compute only: no "
            "start-up, no waiting)",
            *[f"note: {n}" for n in plan.notes],
        ]
    )


def _basis(plan: CompletionPlan, d: dict[str, Any]) -> str:
    if plan.estimate == "calibrated":
        return f"(trials calibrated on {plan.calibration['device']}, {plan.calibration['measured_at'][:10]})"
    return f"at {d['assumed_flops_per_s']:.0e} FLOP/s"
