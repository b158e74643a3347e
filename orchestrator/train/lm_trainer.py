"""The LM distillation loop (nanoGPT-style): a GPT-2 student learns from a teacher source on fixed-length blocks.

Read it top to bottom: seed -> AdamW with linear warm-up/decay (HF distiller's betas 0.9/0.98) -> for each epoch, for
each batch of blocks: teacher signals (``cached`` / ``online`` / ``in_training``, see ``lm_teachers.py``), student
forward, method loss (``distil``), backward, clip, step -> validation perplexity -> keep the best epoch's weights ->
result. Model selection is on validation perplexity (the dev LM loss), as CodeXGLUE's token-level task does; the
line-completion test (ES/EM, generation) belongs to ``tasks/completion`` and runs on the returned best weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import get_linear_schedule_with_warmup

from kd_methods import KDMethod
from models.gpt2_student import model_size_mb
from orchestrator.core.device import resolve_device
from orchestrator.train.lm_data import IGNORE_INDEX, LMBlocks
from orchestrator.train.trainer import NonFiniteLossError, TeacherSource, seed_everything


@dataclass
class LMTrainConfig:
    """Optimisation settings; defaults follow HF's distillation ``train.py`` where it has one (lr 5e-4, Adam eps
    1e-6, warm-up 5%, clip 5.0), scaled down in epochs."""

    epochs: int = 3
    batch_size: int = 8
    eval_batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    adam_eps: float = 1e-6
    warmup_ratio: float = 0.05
    max_grad_norm: float = 5.0
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None  # stop after this many optimiser steps (tests, benchmarks)
    grad_accum: int = 1  # batches per optimiser step (CodeXGLUE: batch 2 x 4; HF distiller: 5 x 50)
    amp: str | None = None  # "bf16": student forward and loss under torch.autocast (GPU runs); None: float32
    # DistilBERT's recipe (HF distillation train.py --freeze_pos_embs): the student keeps the position embeddings
    # it started with (the teacher's, for a teacher_layers student) and never updates them.
    freeze_pos_embs: bool = False

    def __post_init__(self) -> None:
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"unknown amp '{self.amp}'; valid: [None, 'bf16']")


@dataclass
class LMTrainResult:
    best_epoch: int
    best_val_ppl: float
    history: list[dict[str, float]]
    step_losses: list[float]  # per batch (several per optimiser step with grad_accum > 1)
    train_seconds: float
    teacher_seconds: float
    eval_seconds: float
    params: int
    model_mb: float
    tokens_per_s: float  # training tokens per second of the whole loop (teacher included)
    steps: int  # optimiser steps
    checkpoint: Path | None = None
    teacher_losses: list[float] = field(
        default_factory=list
    )  # in_training: the teacher's own LM loss per step

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return out


@torch.no_grad()
def evaluate_lm(
    model: nn.Module, blocks: LMBlocks, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Token-weighted mean next-token loss over ``blocks`` and its perplexity ``exp(loss)``."""
    model.eval()
    loss_sum, count = 0.0, 0
    for idx in torch.arange(len(blocks)).split(batch_size):
        ids, mask, labels = blocks.batch(idx, device)
        logits = model(ids, mask).logits
        v = logits.shape[-1]
        targets = labels[:, 1:].reshape(-1)
        loss_sum += float(
            F.cross_entropy(
                logits[:, :-1].reshape(-1, v).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
            )
        )
        count += int((targets != IGNORE_INDEX).sum())
    loss = loss_sum / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def _optimiser(params: list[Tensor], cfg: LMTrainConfig, total_steps: int) -> tuple[Any, Any]:
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(0.9, 0.98), eps=cfg.adam_eps, weight_decay=cfg.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def total_steps_for(n_blocks: int, cfg: LMTrainConfig) -> int:
    """Optimiser steps of a run: per epoch, one per ``grad_accum`` batches (the last one may be short)."""
    steps = math.ceil(math.ceil(n_blocks / cfg.batch_size) / cfg.grad_accum) * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps is not None else steps


@dataclass
class _Loop:
    """What the loop carries between steps and epochs."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    teacher_seconds: float = 0.0
    eval_seconds: float = 0.0
    step_losses: list[float] = field(default_factory=list)


def _teacher_signals(teacher: Any, indices: Tensor, spec: Any, device: torch.device, loop: _Loop) -> Any:
    if spec.empty:
        return None
    t0 = time.perf_counter()
    signals = teacher.signals("train", indices, spec).to(device)
    if device.type == "cuda":  # a live teacher runs asynchronously: time what it really costs
        torch.cuda.current_stream(device).synchronize()  # this stream's work only, not other streams'
    loop.teacher_seconds += time.perf_counter() - t0
    return signals


def _backward(
    model: nn.Module,
    method: KDMethod,
    batch: tuple[Tensor, Tensor, Tensor],
    signals: Any,
    cfg: LMTrainConfig,
    where: str,
) -> float:
    """Forward, loss and backward of one batch (scaled by 1/grad_accum); returns the unscaled loss."""
    ids, mask, labels = batch
    amp = torch.autocast(ids.device.type, dtype=torch.bfloat16) if cfg.amp else contextlib.nullcontext()
    with amp:  # distil computes its terms in float32 whatever the autocast dtype
        loss = method.loss(model(ids, mask), signals, labels)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()} at {where}")
    (loss / cfg.grad_accum).backward()
    return float(loss.detach())


def train_lm(
    model: nn.Module,
    method: KDMethod,
    blocks: dict[str, LMBlocks],
    cfg: LMTrainConfig,
    teacher: TeacherSource | None = None,
    out_dir: Path | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> LMTrainResult:
    """Train ``model`` on ``blocks['train']`` with ``method``; select the epoch with the lowest validation
    perplexity and leave its weights in ``model``. Raises NonFiniteLossError when the loss stops being finite."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    method.to(device)
    spec = method.signals()
    if not spec.empty and teacher is None:
        raise ValueError(
            f"method '{method.name}' needs teacher signals {spec.key()} but no teacher was given"
        )
    train_blocks = blocks["train"]
    total_steps = total_steps_for(len(train_blocks), cfg)
    if cfg.freeze_pos_embs:  # GPT-2's learned positions (``transformer.wpe``), left out of the optimiser
        wpe = [p for n, p in model.named_parameters() if n.endswith("transformer.wpe.weight")]
        if len(wpe) != 1:
            raise ValueError("freeze_pos_embs: the model has no GPT-2 position embeddings (transformer.wpe)")
        wpe[0].requires_grad_(False)
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, scheduler = _optimiser(params, cfg, total_steps)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    loop = _Loop()
    best_ppl, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        method.train()
        t_epoch, first = time.perf_counter(), len(loop.step_losses)
        batches = torch.randperm(len(train_blocks), generator=shuffle).split(cfg.batch_size)
        for i, indices in enumerate(batches):
            batch = train_blocks.batch(indices, device)
            signals = _teacher_signals(teacher, indices, spec, device, loop)
            where = f"epoch {epoch}, step {loop.step + 1}"
            loop.step_losses.append(_backward(model, method, batch, signals, cfg, where))
            loop.tokens += int(batch[1].sum())
            if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                continue  # accumulate gradients over grad_accum batches
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loop.step += 1
            if loop.step >= total_steps:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loop.train_seconds += time.perf_counter() - t_epoch

        t0 = time.perf_counter()
        val = evaluate_lm(model, blocks["validation"], cfg.eval_batch_size, device)
        loop.eval_seconds += time.perf_counter() - t0
        losses = loop.step_losses[first:]
        row = {
            "epoch": float(epoch),
            "batches": float(len(losses)),
            "train_loss": sum(losses) / max(len(losses), 1),
        }
        history.append({**row, "val_loss": val["loss"], "val_ppl": val["ppl"]})
        if callback:
            callback(history[-1])
        if val["ppl"] < best_ppl:  # model selection on validation perplexity
            best_ppl, best_epoch = val["ppl"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if loop.step >= total_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return _result(model, loop, best_epoch, best_ppl, history, teacher, out_dir)


def _result(
    model: nn.Module,
    loop: _Loop,
    best_epoch: int,
    best_ppl: float,
    history: list[dict[str, float]],
    teacher: Any,
    out_dir: Path | None,
) -> LMTrainResult:
    """Save the (best) weights as safetensors when ``out_dir`` is given and build the result."""
    from safetensors.torch import save_model

    checkpoint = None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = out_dir / "model.safetensors"
        save_model(model, str(checkpoint))
    result = LMTrainResult(
        best_epoch=best_epoch,
        best_val_ppl=best_ppl,
        history=history,
        step_losses=loop.step_losses,
        train_seconds=loop.train_seconds,
        teacher_seconds=loop.teacher_seconds,
        eval_seconds=loop.eval_seconds,
        params=sum(p.numel() for p in model.parameters()),
        model_mb=model_size_mb(model),
        tokens_per_s=loop.tokens / max(loop.train_seconds, 1e-9),
        steps=loop.step,
        checkpoint=checkpoint,
        teacher_losses=list(getattr(teacher, "losses", [])),
    )
    if out_dir:
        (out_dir / "result.json").write_text(json.dumps(result.summary(), indent=2))
    return result
