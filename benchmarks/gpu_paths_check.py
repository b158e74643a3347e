"""The GPU-only behaviours the CPU suite cannot see, checked on the device in about a minute (the GPU audit of
2026-12-07 found each broken, fixed on the CPU side; this confirms the fixes where they matter):

    python benchmarks/gpu_paths_check.py --out gpu_paths.json            # on a CUDA machine
    python benchmarks/gpu_paths_check.py --device cpu --out x.json       # a dry run (what the suite runs)

(On a CPU the dry run only proves the script runs: CPU autocast never casts a GRU, so check 2 can fail on a GPU
alone.)

1. ``bigru_checkpoint``: a BiGRU student's best-epoch checkpoint saves and restores. On CUDA, cuDNN flattens a GRU's
   weights into one buffer, which safetensors' ``save_model`` refuses ("None is covering the entire storage").
2. ``bigru_autocast``: under the trainer's bf16 autocast the GRU layers run in float32. Autocast casts cuDNN RNNs to
   float16 whatever dtype it was given, and bf16 training has no loss scaling.
3. ``distil_rebuild``: the cached LM teacher's logits, rebuilt from its hidden states and head under bf16 autocast,
   are float32 and equal the exact ones (the in-training teacher hands over float32 logits).
4. ``ray_zero_gpu`` (when Ray is installed): a Ray task that asked for no GPU sees none (Ray >= 2.48 stopped hiding
   GPUs from it; ``orchestrator.core.process.worker_env`` restores that).

Prints one JSON object (``passed`` and one entry per check); exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from tasks.cli_errors import OneLineArgumentParser


def bigru_checkpoint(dev: torch.device) -> dict[str, Any]:
    from models import build_student
    from orchestrator.train.trainer import _Best

    model = build_student("bigru-1.5m", 2).to(dev)
    folder = tempfile.TemporaryDirectory(prefix="gpu-paths-")
    best = _Best(model, Path(folder.name))
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best.offer(1, {"selection_score": 0.5})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    best.restore(dev)
    equal = all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    folder.cleanup()
    return {"passed": equal, "restored_equal": equal}


def bigru_autocast(dev: torch.device) -> dict[str, Any]:
    from models import build_student

    model = build_student("bigru-1.5m", 2).to(dev).eval()
    seen: list[str] = []
    hooks = [g.register_forward_hook(lambda m, i, o: seen.append(str(o[0].data.dtype))) for g in model.layers]
    ids = torch.randint(5, 2000, (4, 64), device=dev)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        exact = model(ids, mask).hidden_states[-1]
        seen.clear()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            amp = model(ids, mask).hidden_states[-1]
    for h in hooks:
        h.remove()
    diff = (amp.float() - exact).abs().max().item()
    ok = set(seen) == {"torch.float32"} and diff < 1e-4
    return {"passed": ok, "gru_output_dtypes": sorted(set(seen)), "max_abs_diff": diff}


def distil_rebuild(dev: torch.device) -> dict[str, Any]:
    from kd_methods.base import TeacherSignals
    from kd_methods.distil import HEAD_WEIGHT, teacher_logits_rows

    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, 256, 768, generator=g).to(dev) * 4
    w = (torch.randn(50257, 768, generator=g) * 0.12).to(dev)
    sig = TeacherSignals(tokens={12: h}, extras={HEAD_WEIGHT: w})
    rows = torch.arange(256, device=dev)
    exact = teacher_logits_rows(sig, 12, rows)
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        amp = teacher_logits_rows(sig, 12, rows)
    diff = (amp.float() - exact).abs().max().item()
    return {
        "passed": amp.dtype == torch.float32 and diff == 0.0,
        "dtype": str(amp.dtype),
        "max_abs_diff": diff,
    }


def ray_zero_gpu(dev: torch.device) -> dict[str, Any]:
    import ray

    from orchestrator.core.process import worker_env

    gpus = torch.cuda.device_count() if dev.type == "cuda" else 1  # on a CPU: one logical GPU
    ray.init(address="local", num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": worker_env()})  # fmt: skip
    try:
        seen = ray.remote(lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
        none, half = ray.get([seen.options(num_gpus=0).remote(), seen.options(num_gpus=0.5).remote()])
    finally:
        ray.shutdown()
    return {
        "passed": none == "" and half not in ("", "<unset>"),
        "zero_gpu_sees": none,
        "half_gpu_sees": half,
    }


def main() -> int:
    ap = OneLineArgumentParser(
        prog="python benchmarks/gpu_paths_check.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", default="gpu_paths.json")
    ap.add_argument("--device", default="cuda", help="cuda (the point of the check); cpu for a dry run")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray check")
    args = ap.parse_args()
    if args.device not in ("cuda", "cpu"):
        ap.error(f"--device: unknown device '{args.device}'; valid: cuda, cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "error: no CUDA device: this check is for the CUDA path (--device cpu for a dry run)",
            file=sys.stderr,
        )
        return 2
    dev = torch.device(args.device)
    checks = [bigru_checkpoint, bigru_autocast, distil_rebuild]
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        checks.append(ray_zero_gpu)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    for check in checks:
        try:
            out[check.__name__] = check(dev)
        except Exception as err:  # noqa: BLE001 - a failing check is a result, reported with its reason
            out[check.__name__] = {"passed": False, "error": f"{type(err).__name__}: {err}"[:500]}
        Path(args.out).write_text(json.dumps(out, indent=2))  # after each: a time limit keeps what ran
    out["passed"] = all(out[c.__name__]["passed"] for c in checks)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
