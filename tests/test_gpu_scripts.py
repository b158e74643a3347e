"""The GPU session's scripts and the CUDA-only choices that can be checked on the CPU (the GPU audit of
2026-12-07): a script the GPU session runs must not first fail there on a renamed argument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python args...`` from the repository root, the repository importable."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cuda_prefetch_check_dry_run_on_the_cpu(local_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "prefetch.json"
    run = _python(
        "benchmarks/cuda_prefetch_check.py", "--data", str(local_data), "--device", "cpu", "--samples", "32",
        "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    # both methods (one reading logits, one reading CKD's derived Gram numbers) train identically either way
    assert set(report["methods"]) == {"kd", "ckd"} and report["passed"] is True
    for row in report["methods"].values():
        assert row["max_rel_diff"] < 1e-3 and len(row["prefetch"]) == len(row["main_thread"]) == 3


_CACHE_PROBE = """
import datasets.config, datasets.naming
from tasks.hub_cache import datasets_cache_root, _snake
names = ["code_x_glue_cc_defect_detection", "CodeXGLUE", "BigCloneBench2", "HTTPServer", "ab1Cd", "plain"]
print(datasets_cache_root() == datasets.config.HF_DATASETS_CACHE)
print(all(_snake(n) == datasets.naming.camelcase_to_snakecase(n) for n in names))
"""


def test_hub_cache_paths_follow_datasets_rules_without_importing_it(tmp_path: Path) -> None:
    # the GPU machine has no datasets package; a hub study's --plan reads the cache by datasets' own rules
    base = {
        k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME")
    }
    for extra in (
        {},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        {"HF_HOME": str(tmp_path / "hf")},
        {"HF_HOME": "~/hf", "HF_DATASETS_CACHE": str(tmp_path / "ds")},
    ):
        run = _python("-c", _CACHE_PROBE, env={**base, **extra})
        assert run.stdout.split() == ["True", "True"], (extra, run.stdout, run.stderr[-1000:])
    blocked = "import sys; sys.modules['datasets'] = None\nfrom tasks.hub_cache import datasets_cache_dir\n"
    blocked += "print(datasets_cache_dir('google/code_x_glue_cc_defect_detection', None))"
    run = _python("-c", blocked, env={**base, "HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 0 and run.stdout.strip() == "None", run.stderr[-1000:]


def test_distil_rebuilds_cached_teacher_logits_in_float32_under_bf16_autocast() -> None:
    import torch

    from kd_methods.base import TeacherSignals
    from kd_methods.distil import HEAD_BIAS, HEAD_WEIGHT, teacher_logits_rows

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 64, generator=g) * 4
    head = torch.randn(300, 64, generator=g)
    signals = TeacherSignals(
        tokens={3: hidden}, extras={HEAD_WEIGHT: head, HEAD_BIAS: torch.randn(300, generator=g)}
    )
    rows = torch.tensor([0, 2, 7, 9])
    exact = teacher_logits_rows(signals, 3, rows)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the trainer's amp: bf16 wraps the loss in
        under_amp = teacher_logits_rows(signals, 3, rows)
    # the in-training teacher's logits are float32: the cached teacher's rebuild must not be bf16-rounded
    assert under_amp.dtype == torch.float32 and torch.equal(under_amp, exact)


def test_a_trial_by_hand_on_a_bf16_gpu_builds_the_studys_fp32_cache(
    local_data: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch
) -> None:
    import torch

    import orchestrator.cache.build as build
    from orchestrator.core.device import cache_precision
    from orchestrator.train.trial import TrialConfig, cached_teacher, prepare

    cfg = TrialConfig(
        task="exception",
        student="roberta-tiny",
        method="kd",
        teacher=str(tiny_teacher),
        data=str(local_data),
        teacher_mode="cached",
        cache_dir=str(tmp_path / "cache"),
    )
    prepared = prepare(cfg)
    # as on an H100: precision auto resolves to bf16 for training, but a cache key must not depend on the machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    asked = []

    def record(request, *args, **kwargs):
        asked.append(request)
        raise RuntimeError("recorded")

    monkeypatch.setattr(build, "get_or_build", record)
    try:
        cached_teacher(cfg, prepared)
    except RuntimeError as err:
        assert str(err) == "recorded"
    assert [r.precision for r in asked] == [cache_precision(cfg.train.precision)] == ["fp32"]


_RAY_PROBE = """
import os, ray
from orchestrator.core.process import worker_env
os.environ.pop("CUDA_VISIBLE_DEVICES", None)
ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
         runtime_env={"env_vars": worker_env()})
seen = ray.remote(lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
print(repr(ray.get(seen.options(num_gpus=0).remote())), repr(ray.get(seen.options(num_gpus=0.5).remote())))
ray.shutdown()
"""


def test_a_ray_worker_that_asked_for_no_gpu_sees_none() -> None:
    # Ray >= 2.48 leaves CUDA_VISIBLE_DEVICES alone for num_gpus=0: a `gpu: 0` trial on a GPU node would take
    # cuda:0 unreserved. One (logical) GPU here: the zero-GPU task must see none, the half-GPU task GPU 0.
    run = _python("-c", _RAY_PROBE, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["''", "'0'"], run.stdout


def test_completion_calibration_times_the_step_the_trial_runs(tmp_path: Path, monkeypatch) -> None:
    import orchestrator.train.lm_trainer as lm_trainer
    from orchestrator.design.calibrate_lm import time_lm_student
    from orchestrator.design.calibration import lm_plan_units
    from orchestrator.design.study import build_plan, load_spec

    plan = build_plan(load_spec("completion-full"), calibration=None)
    units = list(lm_plan_units(plan))
    # completion-full trains students under bf16 autocast: the calibration key and unit say so
    assert units and all(info["amp"] == "bf16" and key.endswith("/bf16") for key, info, _ in units)
    smoke = build_plan(load_spec("completion-smoke", {"data": "/nonexistent"}), calibration=None)
    assert all("/bf16" not in key for key, _, _ in lm_plan_units(smoke))  # float32 studies keep their keys
    seen = []
    real = lm_trainer.train_lm

    def spy(student, method, blocks, cfg, source):
        seen.append(cfg.amp)
        return real(student, method, blocks, cfg, source)

    monkeypatch.setattr(lm_trainer, "train_lm", spy)
    unit = {
        "student": "gpt2-4l", "mode": "none", "block_size": 16, "batch_size": 2, "layers": 4, "hidden": 32,
        "vocab": 64, "positions": 16, "heads": 2, "method_params": {"alpha_ce": 0.0, "alpha_clm": 1.0, "alpha_cos": 0.0},
        "topk": 0, "amp": "bf16", "online_dtype": "float32", "work": str(tmp_path), "device": "cpu",
        "warmup": 1, "steps": 2, "cache_dtype": "float16",
    }  # fmt: skip
    out = time_lm_student(unit)
    assert seen == ["bf16"] and out["step_s"] > 0


def test_fractional_trial_gpus_are_packing_too() -> None:
    from orchestrator.design import packing
    from orchestrator.design.study import load_spec

    # full packs two trials per GPU by trial_resources {gpu: 0.5} alone: the memory check must see k = 2
    full = load_spec("full")
    assert (full.trials_per_gpu, packing.resources(full)["gpu"], packing.per_gpu(full)) == (1, 0.5, 2)
    assert packing.per_gpu(load_spec("full", {"trials_per_gpu": 4})) == 8
    assert packing.per_gpu(load_spec("smoke")) == 1  # no GPU asked for
    shares = {0.34: 2, 0.3: 3, 1 / 3: 3}  # Tune places as many as fit whole: 3 x 0.34 > 1
    for share, k in shares.items():
        assert packing.per_gpu(load_spec("full", {"trial_resources": {"cpu": 1, "gpu": share}})) == k


def test_gpu_paths_check_dry_run_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_paths.json"
    run = _python("benchmarks/gpu_paths_check.py", "--device", "cpu", "--no-ray", "--out", str(out))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["passed"] and {"bigru_checkpoint", "bigru_autocast", "distil_rebuild"} <= set(report)
    assert report["bigru_autocast"]["gru_output_dtypes"] == ["torch.float32"]
