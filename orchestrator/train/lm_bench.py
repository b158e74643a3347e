"""What a ``distil`` training step costs with the teacher cached, online or in training, side by side in one run.

``lm_step_costs(config)`` builds a random GPT-2 teacher of the configuration's shape, a student of the same width,
token blocks of random ids and, for the cached mode, the exact LM cache (fp16 h + head) of those blocks; then it
times the LM trainer's step (teacher signals, student forward, distil loss, backward, clip, AdamW step) for
``steps`` steps after ``warmup`` untimed ones, per mode (the modes take turns step by step), plus the teacher-free LM step (``lm_only``: distil with
alpha_ce = alpha_cos = 0, the FT baseline). Reported: median milliseconds per step, the ratio to ``lm_only`` and
tokens per second. Configurations: ``tiny`` (the tests' shape), ``cpu`` (a small code GPT-2 of docs/COMPLETION_STUDY.md:
6 x 256, 8k vocabulary, 256-token blocks) and ``gpt2`` (12 x 768, 50,257 vocabulary, 1,024 tokens: GPU only).

    python -m orchestrator.train.lm_bench tiny cpu --threads 1     # one JSON line per configuration
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kd_methods import build_method
from models.gpt2_student import build_gpt2_student
from models.lm_teacher import LMTeacher, create_random_gpt2_teacher
from orchestrator.core.device import resolve_device
from orchestrator.train.lm_data import LMBlocks
from orchestrator.train.lm_teachers import InTrainingLMTeacher, OnlineLMTeacher

MODES = ("lm_only", "cached", "online", "in_training")


@dataclass(frozen=True)
class LMBenchConfig:
    name: str
    teacher_layers: int
    student: str
    hidden: int
    heads: int
    vocab: int
    block_size: int
    batch_size: int
    steps: int = 5
    warmup: int = 2


CONFIGS = {
    "tiny": LMBenchConfig("tiny", 4, "gpt2-2l", 32, 2, 300, 16, 4, steps=20, warmup=3),
    "cpu": LMBenchConfig("cpu", 6, "gpt2-2l", 256, 8, 8000, 256, 4, steps=8, warmup=2),
    "gpt2": LMBenchConfig("gpt2", 12, "gpt2-6l", 768, 12, 50257, 1024, 8, steps=10, warmup=3),
}


def _source(
    mode: str, teacher: LMTeacher, blocks: dict[str, LMBlocks], work: Path, device: torch.device, info: dict
) -> Any:
    if mode == "online":
        return OnlineLMTeacher(teacher, blocks, device)
    if mode == "in_training":
        return InTrainingLMTeacher(teacher, blocks, total_steps=10**6, device=device)
    from orchestrator.cache.lm_cache import LMCacheRequest, get_or_build_lm
    from orchestrator.cache.lm_serve import LMCachedTeacher

    request = LMCacheRequest(teacher.name_or_path, blocks["train"].block_size, batch_size=8)
    report = get_or_build_lm(request, blocks["train"], work, device=str(device))
    info.update(cache_build_s=round(report.seconds, 3), cache_bytes=report.bytes)
    return LMCachedTeacher(report.path, device=device)


def _stepper(
    mode: str,
    cfg: LMBenchConfig,
    teacher_dir: Path,
    blocks: dict,
    work: Path,
    device: torch.device,
    info: dict,
) -> Callable[[int], float]:
    """A function running training step ``i`` of ``mode`` (its own teacher, student, method and optimiser) and
    returning its seconds."""
    teacher = LMTeacher.load(teacher_dir)
    torch.manual_seed(0)
    student = build_gpt2_student(cfg.student, teacher.model, "random").to(device)
    params = {"alpha_ce": 0.0, "alpha_cos": 0.0} if mode == "lm_only" else {}
    method = build_method("distil", student.shape, teacher.shape, **params).to(device)
    source = None if mode == "lm_only" else _source(mode, teacher, blocks, work, device, info)
    spec = method.signals()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def step(i: int) -> float:
        idx = torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size) % len(blocks["train"])
        t0 = time.perf_counter()
        ids, mask, labels = blocks["train"].batch(idx, device)
        signals = source.signals("train", idx, spec).to(device) if source is not None else None
        loss = method.loss(student(ids, mask), signals, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    return step


def _time_modes(
    cfg: LMBenchConfig, teacher_dir: Path, blocks: dict, work: Path, device: torch.device, info: dict
) -> dict[str, tuple[float, float]]:
    """Median and minimum seconds per step of every mode. The modes take turns step by step, so a change in the
    machine's load (a shared CPU) hits all of them alike instead of whichever ran at that moment."""
    steppers = {mode: _stepper(mode, cfg, teacher_dir, blocks, work, device, info) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(cfg.warmup + cfg.steps):
        for mode, step in steppers.items():
            seconds = step(i)
            if i >= cfg.warmup:
                times[mode].append(seconds)
    return {mode: (statistics.median(t), min(t)) for mode, t in times.items()}


def lm_step_costs(
    config: str | LMBenchConfig, device: str = "auto", threads: int | None = None
) -> dict[str, Any]:
    """Per-step cost of distil in every teacher mode for one configuration (see the module docstring).
    ``threads`` sets torch's CPU threads for the run (on a shared CPU, 1 avoids threads fighting for cores)."""
    cfg = CONFIGS[config] if isinstance(config, str) else config
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher_dir = create_random_gpt2_teacher(
            work / "teacher",
            cfg.teacher_layers,
            cfg.hidden,
            cfg.heads,
            cfg.block_size,
            cfg.vocab,
            dropout=0.0,
        )
        n_blocks = cfg.batch_size * (cfg.warmup + cfg.steps)
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, cfg.vocab, (n_blocks, cfg.block_size), generator=gen)
        blocks = {"train": LMBlocks(ids, torch.ones_like(ids))}
        info: dict[str, Any] = {}
        timed = _time_modes(cfg, teacher_dir, blocks, work, dev, info)
    seconds = {mode: median for mode, (median, _) in timed.items()}
    tokens = cfg.batch_size * cfg.block_size
    return {
        "config": asdict(cfg),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "ms_per_step": {m: round(s * 1e3, 2) for m, s in seconds.items()},
        "ms_per_step_min": {m: round(fastest * 1e3, 2) for m, (_, fastest) in timed.items()},
        "x_lm_only": {m: round(s / seconds["lm_only"], 3) for m, s in seconds.items()},
        "tokens_per_s": {m: round(tokens / s, 1) for m, s in seconds.items()},
        **info,  # the cached mode's one teacher pass over the timed blocks (not part of the step)
    }


def main(argv: list[str]) -> int:
    from orchestrator.core.device import device_problem
    from tasks.cli_errors import OneLineArgumentParser

    p = OneLineArgumentParser(
        prog="python -m orchestrator.train.lm_bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("configs", nargs="*", default=["tiny"], help=f"any of {sorted(CONFIGS)}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        p.error(f"unknown configuration(s) {unknown}; valid: {sorted(CONFIGS)}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if problem := device_problem(args.device):
        p.error(problem)
    for name in args.configs:
        print(json.dumps(lm_step_costs(name, args.device, args.threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
