"""The one training loop: every KD method, every student, and teacher fine-tuning.

Read it top to bottom: seed -> optimiser and schedule -> for each epoch, for each batch: teacher signals (from the
cache or a live teacher), student forward, method loss, backward, clip, step -> evaluate -> keep the best
checkpoint -> test the best checkpoint -> measure inference throughput.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import get_linear_schedule_with_warmup

from kd_methods import KDMethod, SignalSpec, TeacherSignals
from orchestrator.train.config import TrainConfig
from orchestrator.train.prefetch import Prefetcher, prefetchable


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the trial is failed with this reason."""


@dataclass
class EncodedSplit:
    """One split as token ids (unpadded) and labels; ``pad_id`` fills batches to their longest sample."""

    input_ids: list[list[int]]
    labels: list[int]
    pad_id: int
    _cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"{len(self.input_ids)} encoded samples but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids padded to the split's longest sample [N, W] int32, lengths [N], labels [N]), built once, so a
        batch is a few vectorised reads instead of a Python loop over its samples."""
        if self._cache is None:
            lengths = np.fromiter((len(r) for r in self.input_ids), dtype=np.int64, count=len(self.input_ids))
            width = int(lengths.max()) if len(lengths) else 0
            matrix = np.full((len(lengths), width), self.pad_id, dtype=np.int32)
            flat = np.fromiter(
                (t for r in self.input_ids for t in r), dtype=np.int32, count=int(lengths.sum())
            )
            matrix[np.arange(width)[None, :] < lengths[:, None]] = flat
            self._cache = (matrix, lengths, np.asarray(self.labels, dtype=np.int64))
        return self._cache

    def batch(self, indices: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """(input_ids, attention_mask, labels) for the samples at ``indices``, padded to the batch's longest."""
        matrix, lengths, labels = self._arrays()
        idx = indices.numpy() if isinstance(indices, Tensor) else np.asarray(indices)
        lens = lengths[idx]
        width = int(lens.max()) if len(lens) else 0
        ids = torch.from_numpy(matrix[idx, :width].astype(np.int64))
        mask = torch.from_numpy((np.arange(width)[None, :] < lens[:, None]).astype(np.int64))
        return ids.to(device), mask.to(device), torch.from_numpy(labels[idx]).to(device)


class TeacherSource(Protocol):
    """Where a trial's teacher signals come from: a live teacher or the shared cache. Rows follow ``indices``."""

    def signals(self, split: str, indices: Tensor, spec: SignalSpec) -> TeacherSignals: ...


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]]
    train_seconds: float
    teacher_seconds: float
    eval_seconds: float
    inference_samples_per_s: float
    params: int
    steps: int
    checkpoint: Path | None
    test_predictions: dict[str, list] = field(default_factory=dict)
    precision: str = "fp32"  # what the forward passes ran in (TrainConfig.precision resolved on the device)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        out.pop("test_predictions")
        return out


class TaskMetrics(Protocol):
    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]: ...

    def selection_score(self, metrics: dict[str, float]) -> float: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``; ``auto`` is bf16 on a CUDA device with bf16 support, fp32 elsewhere."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return name


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The forward passes' autocast context: bf16 matmuls for ``bf16``, a disabled context for ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def predict(
    model: nn.Module, split: EncodedSplit, batch_size: int, device: torch.device, precision: str = "fp32"
) -> tuple[np.ndarray, float]:
    """Logits for every sample of ``split`` in order, and the seconds the forward passes took."""
    model.eval()
    chunks: list[Tensor] = []
    seconds = 0.0
    for idx in torch.arange(len(split)).split(batch_size):
        ids, mask, _ = split.batch(idx, device)
        start = time.perf_counter()
        with autocast(device, precision):
            logits = model(ids, mask).logits
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        chunks.append(logits.float().cpu())
    return torch.cat(chunks).numpy(), seconds


def evaluate(
    model: nn.Module,
    split: EncodedSplit,
    task: TaskMetrics,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[dict[str, float], np.ndarray, float]:
    logits, seconds = predict(model, split, batch_size, device, precision)
    metrics = task.metrics(logits, np.asarray(split.labels))
    metrics["selection_score"] = task.selection_score(metrics)
    return metrics, logits, seconds


def train(
    model: nn.Module,
    method: KDMethod,
    data: dict[str, EncodedSplit],
    task: TaskMetrics,
    cfg: TrainConfig,
    teacher: TeacherSource | None = None,
    out_dir: Path | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` with ``method`` on ``data['train']``, select on validation, report test on the best epoch.

    ``callback`` receives one dict per epoch (``epoch``, ``train_loss``, ``val_*``); the caller hands it to Ray Tune
    and MLflow. Raises NonFiniteLossError when the loss stops being finite.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model.to(device)
    method.to(device)
    spec = method.signals()
    if not spec.empty and teacher is None:
        raise ValueError(
            f"method '{method.name}' needs teacher signals {spec.key()} but no teacher was given"
        )

    train_split = data["train"]
    if len(train_split) == 0:
        raise ValueError("the training split is empty")
    steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    # The method's own parameters (e.g. PKD's projections) are trained with the student.
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    shuffle = torch.Generator().manual_seed(cfg.seed)

    best_score, best_epoch, best_val = -math.inf, 0, {}
    history: list[dict[str, float]] = []
    train_seconds = teacher_seconds = eval_seconds = 0.0
    step = 0
    ckpt = (out_dir / "best.safetensors") if out_dir else None
    best_state: dict[str, Tensor] | None = None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    for epoch in range(1, cfg.epochs + 1):
        model.train()
        method.train()
        epoch_start = time.perf_counter()
        loss_sum, loss_n = 0.0, 0
        batches = list(torch.randperm(len(train_split), generator=shuffle).split(cfg.batch_size))
        if cfg.max_steps is not None:
            batches = batches[: max(cfg.max_steps - step, 0)]
        # Batch k+1 (and its cached teacher signals) is read and copied on a reader thread while step k runs.
        cached = prefetchable(teacher) and not spec.empty
        for batch in Prefetcher(train_split, batches, device, teacher if cached else None, spec):
            indices, ids, mask, labels = batch.indices, batch.ids, batch.mask, batch.labels
            signals = None
            if not spec.empty:
                t0 = time.perf_counter()
                if (
                    cached
                ):  # read ahead; what derives from it (CKD's relations) is computed here, on the device
                    signals = teacher.finish(batch.signals, device).to(device)
                    teacher_seconds += batch.wait_seconds
                else:
                    with autocast(device, precision):
                        signals = teacher.signals("train", indices, spec).to(device)
                if device.type == "cuda":
                    torch.cuda.synchronize()  # a live teacher runs asynchronously; time what it really costs
                teacher_seconds += time.perf_counter() - t0
            with autocast(device, precision):
                out = model(ids, mask)
                loss = method.loss(out, signals, labels)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch}, step {step + 1}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(indices)
            loss_n += len(indices)
            step += 1
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - epoch_start

        t0 = time.perf_counter()
        val, _, _ = evaluate(model, data["validation"], task, cfg.eval_batch_size, device, precision)
        eval_seconds += time.perf_counter() - t0
        row = {"epoch": float(epoch), "train_loss": loss_sum / max(loss_n, 1)}
        row.update({f"val_{k}": v for k, v in val.items()})
        history.append(row)
        if callback:
            callback(row)
        if val["selection_score"] > best_score:
            best_score, best_epoch, best_val = val["selection_score"], epoch, val
            if ckpt:
                save_model(model, str(ckpt))
            else:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break

    # Test on the best epoch's weights, as the paper's model selection prescribes.
    if ckpt:
        load_model(model, str(ckpt), device=str(device))
    elif best_state is not None:
        model.load_state_dict(best_state)
    test, test_logits, infer_seconds = evaluate(
        model, data["test"], task, cfg.eval_batch_size, device, precision
    )
    if hasattr(task, "headline"):  # score (the headline metric) and majority_baseline: logged as test_<key>
        test.update(task.headline(test, np.asarray(data["test"].labels)))
    probs = torch.softmax(torch.from_numpy(test_logits), dim=-1).numpy()
    predictions = {
        "idx": list(range(len(data["test"]))),
        "label": list(data["test"].labels),
        "pred": probs.argmax(-1).tolist(),
        "probs": np.round(probs, 5).tolist(),
    }
    result = TrainResult(
        best_epoch=best_epoch,
        best_val=best_val,
        test=test,
        history=history,
        train_seconds=train_seconds,
        teacher_seconds=teacher_seconds,
        eval_seconds=eval_seconds,
        inference_samples_per_s=len(data["test"]) / max(infer_seconds, 1e-9),
        params=sum(p.numel() for p in model.parameters()),
        steps=step,
        checkpoint=ckpt,
        test_predictions=predictions,
        precision=precision,
    )
    if out_dir:
        (out_dir / "result.json").write_text(json.dumps(result.summary(), indent=2))
        (out_dir / "test_predictions.json").write_text(json.dumps(predictions))
    return result


def encode_split(
    examples: Sequence[Any], encode: Callable[[list[Any], int], list[list[int]]], max_length: int, pad_id: int
) -> EncodedSplit:
    """Tokenise a split once, before training, with the given model's ``encode``."""
    examples = list(examples)
    return EncodedSplit(encode(examples, max_length), [ex.label for ex in examples], pad_id)
