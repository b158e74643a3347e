"""``python -m orchestrator.bench overhead --task completion``: what one ``distil`` training step costs with the
teacher cached (exact: fp16 final hidden states + head), online and in training, beside the teacher-free LM step,
in one run (the models branch's ``orchestrator.train.lm_bench``, whose modes take turns step by step so a shared
CPU's load hits them alike).

Sizes map onto ``lm_bench``'s configurations: ``tiny`` -> tiny (tests), ``default`` -> cpu (a 6 x 256 code GPT-2,
8k vocabulary, 256-token blocks: docs/COMPLETION_STUDY.md), ``paper`` -> gpt2 (12 x 768, 50,257 vocabulary, 1,024 tokens:
a GPU).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

SIZE_TO_CONFIG = {"tiny": "tiny", "default": "cpu", "paper": "gpt2"}


def lm_overhead(
    size: str, device: str = "auto", steps: int | None = None, threads: int | None = None
) -> dict[str, Any]:
    from orchestrator.train.lm_bench import CONFIGS, lm_step_costs

    cfg = CONFIGS[SIZE_TO_CONFIG[size]]
    if steps:
        cfg = replace(cfg, steps=steps)
    return {"task": "completion", "size": size, **lm_step_costs(cfg, device, threads)}


def print_table(results: dict[str, Any]) -> None:
    cfg = results["config"]
    print(
        f"completion distil step cost, {cfg['name']} ({cfg['teacher_layers']}-layer teacher, {cfg['student']}, "
        f"width {cfg['hidden']}, vocabulary {cfg['vocab']}, {cfg['batch_size']} x {cfg['block_size']} tokens), "
        f"device {results['device']}, {results['threads']} threads, median of {cfg['steps']} steps"
    )
    print(f"{'mode':<12} {'ms/step':>10} {'x lm_only':>10} {'tokens/s':>10}")
    for mode, ms in results["ms_per_step"].items():
        print(
            f"{mode:<12} {ms:>10.1f} {results['x_lm_only'][mode]:>10.2f} {results['tokens_per_s'][mode]:>10.0f}"
        )
    if "cache_build_s" in results:
        print(
            f"cache: one teacher pass over the timed blocks, {results['cache_build_s']} s, {results['cache_bytes']:,} bytes"
        )
