"""The study's hub teachers at their real shapes on the device at hand, without the hub (docs/HUB.md).

Writes the real-shape stand-ins (``models.hub_standin``: each repository's real ``config.json``, the stand-in
tokenizers, no weights) into a Hugging Face cache, builds random-weight models from those configs by hub id
(``AutoConfig.from_pretrained(<hub id>)``, offline), wraps the encoders in the project's ``Teacher`` (its input
forms: UniXcoder's pair template, ModernBERT without token_type_ids) and times, per teacher, a fine-tune step
(forward, backward, AdamW; bf16 autocast on a GPU) and an inference pass at the study's batch and length
(``teacher_train``: 32 x 512; CodeGPT: the completion profile's 8 x 1024, its vocabulary grown by CodeXGLUE's 234
tokens as ``load_codexglue_teacher`` grows it). One warm-up, then the median of ``--steps`` timed steps.

    python benchmarks/hub_teachers_gpu.py --hf-home /tmp/hf-real --out hub_teachers.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn, steps: int, sync) -> float:  # noqa: ANN001
    fn()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _pairs(n: int) -> list:
    from models.hub_standin import default_texts
    from tasks.base import Example

    text = "\n".join(default_texts())
    chunk = 2400  # about 600 BPE tokens per side: every pair is cut to the length, as long clone pairs are
    parts = [text[i * chunk : (i + 1) * chunk] for i in range(2 * n)]
    return [Example(i, parts[2 * i], i % 2, parts[2 * i + 1]) for i in range(n)]


def _encoder(hub_id: str, batch: int, length: int, steps: int, device: str) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from models.teacher import Teacher

    config = AutoConfig.from_pretrained(hub_id, local_files_only=True, num_labels=2)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config)
    teacher = Teacher(model, AutoTokenizer.from_pretrained(hub_id, local_files_only=True), hub_id)
    rows = teacher.encode(_pairs(batch), length)
    ids = torch.full((batch, length), teacher.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    ids, mask = ids.to(device), (ids != teacher.pad_id).long().to(device)
    labels = torch.arange(batch, device=device) % 2
    return _time_steps(teacher, ids, mask, lambda out: torch.nn.functional.cross_entropy(out.logits.float(), labels),
                       steps, device) | {"input_form": teacher.input_form, "first_ids": rows[0][:4],
                                          "eos_in_pair": rows[0].count(teacher.tokenizer.sep_token_id)}  # fmt: skip


def _time_steps(model, ids, mask, loss_fn, steps: int, device: str) -> dict:  # noqa: ANN001
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step() -> None:
        with torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
            loss = loss_fn(model(ids, mask))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer() -> None:
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
            model(ids, mask)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = _timed(step, steps, sync)
    model.eval()
    infer_s = _timed(infer, steps, sync)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "batch": list(ids.shape),
        "train_step_ms": round(1000 * train_s, 2),
        "inference_ms": round(1000 * infer_s, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }


def _codegpt(batch: int, length: int, steps: int, device: str) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from models.hub_standin import CODEGPT

    config = AutoConfig.from_pretrained(CODEGPT, local_files_only=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config)
    # + <|UNKNOWN|> + CodeXGLUE's 3 placeholders and kept literals (tasks.completion.special_tokens(), read here
    # without importing the package, whose scorer needs rapidfuzz)
    literals = json.loads((ROOT / "tasks" / "completion" / "literals.json").read_text())
    rows = config.vocab_size + 1 + 3 + sum(len(literals.get(k, [])) for k in ("str", "num", "char"))
    model.resize_token_embeddings(rows, mean_resizing=False)
    ids = torch.randint(0, rows, (batch, length), device=device)
    mask = torch.ones_like(ids)

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids, mask):  # noqa: ANN001, ANN202
            return self.model(input_ids=ids, attention_mask=mask, labels=ids)

    return _time_steps(LM(), ids, mask, lambda out: out.loss, steps, device) | {"vocab_rows": rows}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from tasks.cli_errors import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="python benchmarks/hub_teachers_gpu.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--hf-home", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--lm-batch", type=int, default=8)
    parser.add_argument("--lm-length", type=int, default=1024)
    parser.add_argument("--tiny", action="store_true", help="the tiny stand-ins instead (a CPU dry run)")
    args = parser.parse_args(argv)
    if args.hf_home.exists() and not args.hf_home.is_dir():
        parser.error(f"--hf-home {args.hf_home}: a file; give the folder the stand-ins are written to")
    if min(args.steps, args.batch, args.length, args.lm_batch, args.lm_length) < 1:
        parser.error("--steps, --batch, --length, --lm-batch and --lm-length must be >= 1")
    os.environ["HF_HOME"] = str(args.hf_home)  # before transformers reads its cache paths
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT))
    import torch

    from models.hub_standin import CODEGPT, MODERNBERT, UNIXCODER, write_hub_models

    device = "cuda" if torch.cuda.is_available() else "cpu"
    write_hub_models(args.hf_home, real_shapes=not args.tiny)
    result: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "torch": torch.__version__, "precision": "bf16 autocast" if device == "cuda" else "fp32"}  # fmt: skip
    for hub_id in (UNIXCODER, MODERNBERT):
        result[hub_id] = _encoder(hub_id, args.batch, args.length, args.steps, device)
        print(hub_id, json.dumps(result[hub_id]), flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    result[CODEGPT] = _codegpt(args.lm_batch, args.lm_length, args.steps, device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
