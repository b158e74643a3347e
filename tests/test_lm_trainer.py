"""The LM distillation loop in each teacher mode: a 2-layer GPT-2 student from a 4-layer tiny teacher, a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.lm_teacher import LMTeacher, create_random_gpt2_teacher
from orchestrator.train.lm_data import make_blocks
from orchestrator.train.lm_trainer import LMTrainConfig
from orchestrator.train.lm_trial import LMTrialConfig, run_lm_trial

LINES = [
    "import os <EOL> import sys <EOL> def main ( argv ) : <EOL> return os . path . join ( argv [ <NUM_LIT:0> ] )",
    "class Foo ( object ) : <EOL> def __init__ ( self , x ) : <EOL> self . x = x <EOL> return None",
    "for i in range ( <NUM_LIT> ) : <EOL> print ( i , <STR_LIT> ) <EOL> if i > x : <EOL> break",
]
TRAIN = [f"<s> {line} </s>" for line in LINES] * 4
VALIDATION = [f"<s> {LINES[1]} <EOL> {LINES[0]} </s>"]
# cached (fp16 h) vs online: the first step's loss differs only by the fp16 rounding of h (measured 3.1e-7 relative).
FIRST_STEP_RTOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Dropout 0 (students copy it): modes that must agree are then comparable step by step.
    return create_random_gpt2_teacher(
        tmp_path_factory.mktemp("lmtrain") / "tiny-gpt2",
        num_layers=4,
        hidden_size=32,
        n_positions=32,
        vocab_size=300,
        tokenizer_texts=TRAIN,
        dropout=0.0,
    )


def _trial(teacher_dir: Path, storage: Path, mode: str, **train: object) -> LMTrialConfig:
    settings = {"epochs": 3, "batch_size": 4, "lr": 3e-3, "warmup_ratio": 0.0, "device": "cpu", **train}
    return LMTrialConfig(
        teacher=str(teacher_dir),
        student="gpt2-2l",
        student_init="random",
        teacher_mode=mode,
        block_size=16,
        texts={"train": TRAIN, "validation": VALIDATION},
        storage=str(storage),
        train=LMTrainConfig(**settings),
    )


def test_every_teacher_mode_trains_and_the_modes_agree(teacher_dir: Path, tmp_path: Path) -> None:
    results = {
        mode: run_lm_trial(_trial(teacher_dir, tmp_path, mode))
        for mode in ("online", "cached", "in_training")
    }
    for mode, res in results.items():
        losses = res.train.step_losses
        assert res.train.steps == len(losses) >= 6, mode
        assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, (mode, losses)  # the loss falls
        assert len(res.train.history) == 3 and 1 <= res.train.best_epoch <= 3
        assert res.train.best_val_ppl == min(h["val_ppl"] for h in res.train.history)
        assert res.train.tokens_per_s > 0 and res.train.model_mb > 0 and res.train.params > 0
    online, cached, live = results["online"], results["cached"], results["in_training"]
    assert cached.cache_key and cached.cache_bytes > 0 and online.cache_key is None
    # Cached (exact h, fp16) and online: the same first-step loss within the fp16 tolerance, and the same run.
    assert cached.train.step_losses[0] == pytest.approx(online.train.step_losses[0], rel=FIRST_STEP_RTOL)
    assert cached.train.best_val_ppl == pytest.approx(online.train.best_val_ppl, rel=1e-3)
    # In-training: the first step sees the not-yet-updated teacher (same loss as online, dropout off), then the
    # teacher moves: its own LM loss is recorded every step and the student's losses part from the online run's.
    assert live.train.step_losses[0] == pytest.approx(online.train.step_losses[0], rel=1e-5)
    assert len(live.train.teacher_losses) == live.train.steps
    assert live.train.step_losses[-1] != pytest.approx(online.train.step_losses[-1], rel=1e-4)
    assert live.teacher_val_ppl is not None and online.teacher_val_ppl is None


def test_cached_topk_mode_trains_and_reports_the_mass_it_keeps(teacher_dir: Path, tmp_path: Path) -> None:
    cfg = _trial(teacher_dir, tmp_path, "cached-topk")
    cfg.topk = 8
    cfg.method_params = {"alpha_cos": 0.0}
    res = run_lm_trial(cfg)
    assert res.approximate and set(res.mass_kept) == {"1", "2"}
    assert 0 < res.mass_kept["2"] < res.mass_kept["1"] < 1  # T = 2 lifts the tail the top-k drop
    losses = res.train.step_losses
    assert sum(losses[-2:]) < sum(losses[:2])
    cfg.method_params = {}  # alpha_cos 1 needs hidden states, which a top-k cache lacks
    with pytest.raises(KeyError, match="top-k cache stores no hidden states"):
        run_lm_trial(cfg)


def test_online_teacher_in_bfloat16_is_close_to_float32(teacher_dir: Path, tmp_path: Path) -> None:
    runs = {}
    for dtype in ("float32", "bfloat16"):
        cfg = _trial(teacher_dir, tmp_path, "online", max_steps=2)
        cfg.online_dtype = dtype
        runs[dtype] = run_lm_trial(cfg).train.step_losses[0]
    assert runs["bfloat16"] != runs["float32"] and runs["bfloat16"] == pytest.approx(
        runs["float32"], rel=2e-2
    )
    with pytest.raises(ValueError, match="unknown online teacher dtype 'int8'"):
        cfg.online_dtype = "int8"
        run_lm_trial(cfg)


def test_gradient_accumulation_equals_the_larger_batch_and_bf16_autocast_runs(
    teacher_dir: Path, tmp_path: Path
) -> None:
    big = run_lm_trial(_trial(teacher_dir, tmp_path, "online", batch_size=4, max_steps=2)).train
    accum = run_lm_trial(
        _trial(teacher_dir, tmp_path, "online", batch_size=2, grad_accum=2, max_steps=2)
    ).train
    assert big.steps == accum.steps == 2 and len(accum.step_losses) == 4
    # Full blocks: two half-batches' mean gradients are the full batch's, so after one step the runs agree.
    assert big.step_losses[1] == pytest.approx(sum(accum.step_losses[2:]) / 2, rel=1e-4)
    amp = run_lm_trial(_trial(teacher_dir, tmp_path, "online", max_steps=2, amp="bf16")).train
    assert all(torch.isfinite(torch.tensor(amp.step_losses)))
    assert amp.step_losses[0] == pytest.approx(big.step_losses[0], rel=2e-2)
    with pytest.raises(ValueError, match="unknown amp 'fp8'"):
        LMTrainConfig(amp="fp8")


def test_cached_mode_reuses_one_teacher_pass(teacher_dir: Path, tmp_path: Path) -> None:
    first = run_lm_trial(_trial(teacher_dir, tmp_path, "cached", max_steps=2))
    second = run_lm_trial(_trial(teacher_dir, tmp_path, "cached", max_steps=2, seed=1))
    assert first.cache_key == second.cache_key
    passes = (tmp_path / "teacher_cache" / "passes.jsonl").read_text().splitlines()
    assert len(passes) == 1 and json.loads(passes[0])["task"] == "completion"


def test_bad_trial_settings_fail_in_one_line(teacher_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown teacher_mode 'frozen'; valid: \['cached', 'cached-topk', 'online', 'in_training'\]",
    ):
        _trial(teacher_dir, tmp_path, "frozen")
    with pytest.raises(ValueError, match="makes no block|make no block"):
        blocks = LMTeacher.load(teacher_dir).encode_texts(["<s> x </s>"])
        make_blocks(blocks, 16)


def test_student_checkpoint_is_the_best_epoch(teacher_dir: Path, tmp_path: Path) -> None:
    cfg = _trial(teacher_dir, tmp_path, "online")
    cfg.out_dir = str(tmp_path / "out")
    res = run_lm_trial(cfg)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert res.train.checkpoint is not None and "model.transformer.h.1.attn.c_attn.weight" in saved
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    assert summary["best_epoch"] == res.train.best_epoch and torch.isfinite(
        torch.tensor(summary["best_val_ppl"])
    )


def test_step_cost_benchmark_times_every_teacher_mode() -> None:
    from orchestrator.train.lm_bench import CONFIGS, MODES, LMBenchConfig, lm_step_costs

    cfg = LMBenchConfig(**{**CONFIGS["tiny"].__dict__, "steps": 2, "warmup": 1})
    out = lm_step_costs(cfg, device="cpu")
    assert set(out["ms_per_step"]) == set(MODES) and all(v > 0 for v in out["ms_per_step"].values())
    assert out["x_lm_only"]["lm_only"] == 1.0 and out["cache_bytes"] > 0
    assert out["tokens_per_s"]["cached"] == pytest.approx(
        4 * 16 / out["ms_per_step"]["cached"] * 1e3, rel=0.01
    )


def test_a_trial_on_the_completion_proxy_with_the_tasks_tokenizer(tmp_path: Path) -> None:
    """The real data path: tasks.completion's offline proxy (data_dir) and its BPE, a cached trial end to end."""
    import sysconfig

    from tasks.completion.data import load_split
    from tasks.completion.proxy import ProxySettings, build_completion_proxy
    from tasks.completion.tokenizer import build_bpe_tokenizer

    std = Path(sysconfig.get_paths()["stdlib"])
    roots = [std / name for name in ("json", "email", "logging", "http", "urllib", "xml")]
    data = tmp_path / "data"
    build_completion_proxy(roots, data, ProxySettings(max_mb=0.3, line_samples=5))
    tokenizer = build_bpe_tokenizer(load_split(data, "train"), vocab_size=500)
    teacher = create_random_gpt2_teacher(
        tmp_path / "teacher", num_layers=4, hidden_size=32, n_positions=64, tokenizer=tokenizer, dropout=0.0
    )
    cfg = LMTrialConfig(
        teacher=str(teacher),
        student="gpt2-2l",
        student_init="teacher_layers",
        block_size=64,
        data_dir=str(data),
        storage=str(tmp_path / "runs"),
        train=LMTrainConfig(epochs=1, batch_size=8, lr=3e-3, device="cpu", max_steps=6),
    )
    res = run_lm_trial(cfg)
    assert res.cache_key and res.train.steps == 6 and res.train.step_losses[-1] < res.train.step_losses[0]
    assert res.block_size == 64 and res.train.history[0]["val_ppl"] > 1


def test_in_training_teacher_learns_over_the_whole_run_with_grad_accum(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.train import lm_trial
    from orchestrator.train.lm_teachers import InTrainingLMTeacher

    lrs: list[float] = []
    real = InTrainingLMTeacher.signals

    def recording(self, split, indices, spec):  # the lr each teacher step is taken with
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return real(self, split, indices, spec)

    cfg = _trial(teacher_dir, tmp_path, "in_training", batch_size=2, grad_accum=4, epochs=2)
    monkeypatch.setattr(InTrainingLMTeacher, "signals", recording)
    res = lm_trial.run_lm_trial(cfg)
    # the teacher steps on every batch (4 per student step): its linear decay spans all of them, reaching 0
    # only after the last, not after a quarter of the run
    assert len(lrs) == len(res.train.step_losses) > 3 * res.train.steps
    assert all(lr > 0 for lr in lrs) and lrs[0] == pytest.approx(cfg.teacher_train.lr)
    assert lrs[-1] == pytest.approx(cfg.teacher_train.lr / len(lrs))


def test_freeze_pos_embs_keeps_the_teachers_positions(teacher_dir: Path, tmp_path: Path) -> None:
    """DistilBERT's recipe (``--freeze_pos_embs``): a teacher_layers student ends with the teacher's position
    embeddings unchanged while its other weights move; without it they are trained."""
    from models.gpt2_student import build_gpt2_student

    teacher = LMTeacher.load(teacher_dir)
    results = {}
    for freeze in (True, False):
        cfg = _trial(teacher_dir, tmp_path / str(freeze), "online", freeze_pos_embs=freeze, epochs=1)
        cfg.student_init = "teacher_layers"
        cfg.out_dir = str(tmp_path / f"out-{freeze}")
        run_lm_trial(cfg)
        from safetensors.torch import load_file

        results[freeze] = load_file(str(Path(cfg.out_dir) / "model.safetensors"))
    start = build_gpt2_student("gpt2-2l", teacher.model, "teacher_layers").model.state_dict()
    wpe, block = "model.transformer.wpe.weight", "model.transformer.h.0.attn.c_attn.weight"
    assert torch.equal(results[True][wpe], start["transformer.wpe.weight"])
    assert not torch.equal(results[False][wpe], start["transformer.wpe.weight"])
    assert not torch.equal(results[True][block], start["transformer.h.0.attn.c_attn.weight"])
