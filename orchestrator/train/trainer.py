"""The one training loop: every KD method, every student, and teacher fine-tuning.

Read ``train`` top to bottom: seed -> optimiser and schedule (``_start``) -> for each epoch (``_train_epoch``), for
each batch: teacher signals (``_teacher_signals``: from the cache or a live teacher), student forward, method loss,
backward, clip, step (``_step``) -> evaluate -> keep the best checkpoint (``_Best``) -> test the best checkpoint and
measure inference throughput (``_test``).
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
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import get_linear_schedule_with_warmup

from kd_methods import KDMethod, SignalSpec, TeacherSignals
from orchestrator.core.device import resolve_device, resolve_precision
from orchestrator.train.config import TrainConfig
from orchestrator.train.prefetch import Prefetcher, prefetchable


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the trial is failed with this reason."""


@dataclass
class EncodedSplit:
    """One split as token ids (unpadded) and labels; ``pad_id`` fills batches to their longest sample. ``ids``: the
    samples' own dataset ids (``Example.id``; None where a record has none), for the test predictions."""

    input_ids: list[list[int]]
    labels: list[int]
    pad_id: int
    ids: list[str | None] | None = None
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
            torch.cuda.synchronize(device)
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


@dataclass
class _Run:
    """What the loop carries from step to step: the model and method, the optimiser, the step count, the clocks."""

    model: nn.Module
    method: KDMethod
    teacher: TeacherSource | None
    cfg: TrainConfig
    device: torch.device
    precision: str
    spec: SignalSpec
    params: list[Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    shuffle: torch.Generator
    step: int = 0
    train_seconds: float = 0.0
    teacher_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps


def _start(
    model: nn.Module,
    method: KDMethod,
    train_split: EncodedSplit,
    cfg: TrainConfig,
    teacher: TeacherSource | None,
) -> _Run:
    """Device and precision, the model and method on the device, AdamW with a linear warm-up schedule."""
    device = resolve_device(cfg.device)
    model.to(device)
    method.to(device)
    spec = method.signals()
    if not spec.empty and teacher is None:
        raise ValueError(
            f"method '{method.name}' needs teacher signals {spec.key()} but no teacher was given"
        )
    if len(train_split) == 0:
        raise ValueError("the training split is empty")
    total_steps = math.ceil(len(train_split) / cfg.batch_size) * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    # The method's own parameters (e.g. PKD's projections) are trained with the student.
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    precision = resolve_precision(cfg.precision, device)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    return _Run(model, method, teacher, cfg, device, precision, spec, params, optimizer, scheduler, shuffle)


def _teacher_signals(run: _Run, batch: Any, cached: bool) -> TeacherSignals | None:
    """The batch's teacher signals on the device: read ahead from the cache (what derives from them, e.g. CKD's
    relations, is computed here, on the device), or from a live teacher now."""
    if run.spec.empty:
        return None
    t0 = time.perf_counter()
    if cached:
        signals = run.teacher.finish(batch.signals, run.device).to(run.device)  # type: ignore[union-attr]
        run.teacher_seconds += batch.wait_seconds
    else:
        with autocast(run.device, run.precision):
            signals = run.teacher.signals("train", batch.indices, run.spec).to(run.device)  # type: ignore[union-attr]
    if run.device.type == "cuda":  # a live teacher runs asynchronously; time what it really costs. Only this
        # stream: the prefetcher's side-stream copies of the next batches are not teacher time.
        torch.cuda.current_stream(run.device).synchronize()
    run.teacher_seconds += time.perf_counter() - t0
    return signals


def _step(run: _Run, batch: Any, signals: TeacherSignals | None, epoch: int) -> float:
    """One optimiser step: forward, the method's loss, backward, clip, step. Returns the loss."""
    with autocast(run.device, run.precision):
        loss = run.method.loss(run.model(batch.ids, batch.mask), signals, batch.labels)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch}, step {run.step + 1}")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.params, run.cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return loss.item()


def _train_epoch(run: _Run, train_split: EncodedSplit, epoch: int) -> float:
    """One pass over the shuffled training split (or what is left of ``max_steps``); the mean training loss."""
    run.model.train()
    run.method.train()
    start = time.perf_counter()
    loss_sum, loss_n = 0.0, 0
    batches = list(torch.randperm(len(train_split), generator=run.shuffle).split(run.cfg.batch_size))
    if run.cfg.max_steps is not None:
        batches = batches[: max(run.cfg.max_steps - run.step, 0)]
    # Batch k+1 (and its cached teacher signals) is read and copied on a reader thread while step k runs.
    cached = prefetchable(run.teacher) and not run.spec.empty
    for batch in Prefetcher(train_split, batches, run.device, run.teacher if cached else None, run.spec):
        signals = _teacher_signals(run, batch, cached)
        loss_sum += _step(run, batch, signals, epoch) * len(batch.indices)
        loss_n += len(batch.indices)
        if run.finished:
            break
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    run.train_seconds += time.perf_counter() - start
    return loss_sum / max(loss_n, 1)


class _Best:
    """The best epoch on validation: its weights in ``out_dir`` (safetensors) or in memory, restored for the test."""

    def __init__(self, model: nn.Module, out_dir: Path | None) -> None:
        self.model, self.score, self.epoch, self.val = model, -math.inf, 0, {}
        self.ckpt = (out_dir / "best.safetensors") if out_dir else None
        self.state: dict[str, Tensor] | None = None
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)

    def offer(self, epoch: int, val: dict[str, float]) -> None:
        if val["selection_score"] > self.score:
            self.score, self.epoch, self.val = val["selection_score"], epoch, val
            if self.ckpt:  # copies: on CUDA a GRU's weights are views of one flat cuDNN buffer, which
                # safetensors refuses to save. Tied weights are saved under each name; restore loads them all.
                state = {
                    k: v.detach().to("cpu", copy=True).contiguous()
                    for k, v in self.model.state_dict().items()
                }
                save_file(state, str(self.ckpt), metadata={"format": "pt"})
            else:
                self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, device: torch.device) -> None:
        if self.ckpt:
            # load_state_dict copies into the parameters in place, keeping a flattened GRU's cuDNN buffer.
            self.model.load_state_dict(load_file(str(self.ckpt), device=str(device)))
        elif self.state is not None:
            self.model.load_state_dict(self.state)


def label_names(predictions: dict[str, list], names: Sequence[str] | None) -> dict[str, list[str]]:
    """The names of a predictions file's label and pred indices (``label_name``, ``pred_name``), beside them: a
    reader of ``predictions/test.json`` need not look the task's labels up. None known: nothing."""
    if not names:
        return {}
    return {
        "label_name": [names[i] for i in predictions["label"]],
        "pred_name": [names[i] for i in predictions["pred"]],
    }


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
    cfg = cfg.for_split(len(data["train"]))  # with cfg.steps: the epochs those steps take on this split
    seed_everything(cfg.seed)
    run = _start(model, method, data["train"], cfg, teacher)
    best = _Best(model, out_dir)
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.epochs + 1):
        row = {"epoch": float(epoch), "train_loss": _train_epoch(run, data["train"], epoch)}
        t0 = time.perf_counter()
        val, _, _ = evaluate(model, data["validation"], task, cfg.eval_batch_size, run.device, run.precision)
        run.eval_seconds += time.perf_counter() - t0
        row.update({f"val_{k}": v for k, v in val.items()})
        history.append(row)
        if callback:
            callback(row)
        best.offer(epoch, val)
        if run.finished:
            break
    best.restore(run.device)  # test on the best epoch's weights, as the paper's model selection prescribes
    return _test(run, best, history, data["test"], task, out_dir)


def _test(
    run: _Run, best: _Best, history: list[dict[str, float]], test_split: EncodedSplit, task: TaskMetrics,
    out_dir: Path | None,
) -> TrainResult:  # fmt: skip
    """The best epoch's test metrics (with the headline score and majority baseline), predictions and speed."""
    test, test_logits, infer_seconds = evaluate(
        run.model, test_split, task, run.cfg.eval_batch_size, run.device, run.precision
    )
    if hasattr(task, "headline"):  # score (the headline metric) and majority_baseline: logged as test_<key>
        test.update(task.headline(test, np.asarray(test_split.labels)))
    probs = torch.softmax(torch.from_numpy(test_logits), dim=-1).numpy()
    predictions: dict[str, list] = {"idx": list(range(len(test_split)))}  # the position in the test split
    if (ids := getattr(test_split, "ids", None)) and len(ids) == len(test_split):
        predictions["id"] = list(ids)  # the dataset's own id (Devign idx; BigCloneBench "id1<TAB>id2")
    predictions.update(
        label=list(test_split.labels), pred=probs.argmax(-1).tolist(), probs=np.round(probs, 5).tolist()
    )
    predictions.update(label_names(predictions, getattr(task, "label_names", None)))
    result = TrainResult(
        best_epoch=best.epoch,
        best_val=best.val,
        test=test,
        history=history,
        train_seconds=run.train_seconds,
        teacher_seconds=run.teacher_seconds,
        eval_seconds=run.eval_seconds,
        inference_samples_per_s=len(test_split) / max(infer_seconds, 1e-9),
        params=sum(p.numel() for p in run.model.parameters()),
        steps=run.step,
        checkpoint=best.ckpt,
        test_predictions=predictions,
        precision=run.precision,
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
    ids = [getattr(ex, "id", None) for ex in examples]
    known = any(i is not None for i in ids)  # no id anywhere: none in the predictions either
    return EncodedSplit(
        encode(examples, max_length), [ex.label for ex in examples], pad_id, ids if known else None
    )
