"""GPU-only code paths checked on the CPU (the audit's F1, F4 and F9).

- F1: on CUDA, cuDNN's ``flatten_parameters`` re-points every weight of an ``nn.GRU`` into one flat buffer, so each
  is a partial view of a larger storage, which safetensors' ``save_model`` refuses. ``flatten_like_cudnn`` builds
  that layout on the CPU; the trainer's best-epoch checkpoint (``_Best``) must save and restore it.
- F4: on CUDA, autocast runs cuDNN RNNs in float16 whatever its dtype; the BiGRU runs its recurrence with autocast
  off, in float32. The CPU cannot show the fp16 cast, so the test checks the guard itself: autocast is off and the
  input is float32 when each GRU runs.
- F9: every CUDA synchronisation names the device the run uses (a bare one waits for cuda:0 only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

from models import build_student
from orchestrator.train.trainer import _Best

ROOT = Path(__file__).resolve().parent.parent


def flatten_like_cudnn(model: nn.Module) -> None:
    """What ``nn.GRU.flatten_parameters`` does on CUDA: each GRU's weights become views of one flat buffer."""
    for gru in (m for m in model.modules() if isinstance(m, nn.RNNBase)):
        params = list(gru._flat_weights)
        flat = torch.empty(sum(p.numel() for p in params))
        offset = 0
        for p in params:
            n = p.numel()
            flat[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset : offset + n].view_as(p)
            offset += n


def _grus(model: nn.Module) -> list[nn.GRU]:
    return [m for m in model.modules() if isinstance(m, nn.GRU)]


def _flat_model() -> nn.Module:
    torch.manual_seed(0)
    model = build_student("bigru-tiny", 3)
    flatten_like_cudnn(model)
    for gru in _grus(model):  # the layout the test means: every weight of a GRU shares one storage
        assert len({p.untyped_storage().data_ptr() for p in gru._flat_weights}) == 1
    return model


def test_flattened_gru_is_what_safetensors_save_model_refuses(tmp_path):
    with pytest.raises(RuntimeError, match="covering the entire storage"):
        save_model(_flat_model(), str(tmp_path / "m.safetensors"))


def test_best_checkpoint_round_trips_a_flattened_bigru(tmp_path):
    model = _flat_model()
    best = _Best(model, tmp_path / "out")
    best.offer(1, {"selection_score": 0.5})  # raised before the fix (save_model on the flat views)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    best.offer(2, {"selection_score": 0.1})  # worse: not saved
    best.restore(torch.device("cpu"))
    restored = model.state_dict()
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
    for gru in _grus(
        model
    ):  # restored in place: the flat buffer cuDNN works on is still the weights' storage
        assert len({p.untyped_storage().data_ptr() for p in gru._flat_weights}) == 1
    fresh = build_student("bigru-tiny", 3)  # the file alone rebuilds the model
    _Best(fresh, tmp_path / "out").restore(torch.device("cpu"))
    assert all(torch.equal(fresh.state_dict()[k], saved[k]) for k in saved)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight


def test_best_checkpoint_round_trips_tied_weights(tmp_path):
    model = _Tied()
    saved = model.a.weight.detach().clone()
    best = _Best(model, tmp_path)
    best.offer(1, {"selection_score": 1.0})
    with torch.no_grad():
        model.a.weight.zero_()
    best.restore(torch.device("cpu"))
    assert model.b.weight is model.a.weight and torch.equal(model.a.weight, saved)


def test_bigru_recurrence_runs_in_float32_without_autocast():
    torch.manual_seed(0)
    model = build_student("bigru-tiny", 3).eval()
    ids = torch.randint(3, model.spec.vocab_size, (4, 9))
    mask = (torch.arange(9)[None, :] < torch.tensor([9, 5, 2, 7])[:, None]).long()
    seen: list[tuple[bool, torch.dtype]] = []

    def record(module, args):
        seen.append((torch.is_autocast_enabled("cpu"), args[0].data.dtype))

    handles = [gru.register_forward_pre_hook(record) for gru in _grus(model)]
    with torch.no_grad():
        plain = model(ids, mask)
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, mask)
    for h in handles:
        h.remove()
    assert seen == [(False, torch.float32)] * len(model.layers)
    for a, b in zip(
        [*plain.hidden_states[1:], *plain.cls_states[1:]], [*mixed.hidden_states[1:], *mixed.cls_states[1:]]
    ):
        assert b.dtype == torch.float32 and torch.equal(a, b)


def _bare_cuda_syncs(path: Path) -> list[int]:
    """Lines of ``torch.cuda.synchronize()`` calls without a device in ``path``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "synchronize"
            and ast.unparse(node.func.value) == "torch.cuda"
            and not node.args
            and not node.keywords
        ):
            lines.append(node.lineno)
    return lines


def test_no_cuda_synchronize_without_a_device():
    bare = {
        str(p.relative_to(ROOT)): lines
        for pkg in ("orchestrator", "models", "kd_methods", "tasks")
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if (lines := _bare_cuda_syncs(p))
    }
    assert bare == {}, f"torch.cuda.synchronize() waits for cuda:0 whatever the run's device: {bare}"
