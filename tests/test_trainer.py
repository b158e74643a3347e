"""The training loop and the one-trial entry points, on tiny models and local real-code data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_model

from models import build_student
from orchestrator.train.finetune import finetune_teacher
from orchestrator.train.trainer import NonFiniteLossError, TrainConfig, evaluate, resolve_device
from orchestrator.train.trial import TrialConfig, prepare, run_trial
from tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def _cfg(local_data: Path, tmp_path: Path, **kw) -> TrialConfig:
    base = dict(
        task="exception",
        student="roberta-tiny",
        method="ft",
        data=str(local_data),
        max_length=64,
        max_samples=48,
        cache_dir=str(tmp_path / "cache"),
        train=TrainConfig(epochs=2, batch_size=8, lr=2e-3),
    )
    base.update(kw)
    return TrialConfig(**base)


def test_training_is_deterministic_for_a_seed(local_data, tmp_path):
    a = run_trial(_cfg(local_data, tmp_path, seed=3))
    b = run_trial(_cfg(local_data, tmp_path, seed=3))
    c = run_trial(_cfg(local_data, tmp_path, seed=4))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.test == b.test
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_best_checkpoint_is_safetensors_and_test_uses_it(local_data, tmp_path):
    seen: list[dict] = []
    cfg = _cfg(local_data, tmp_path, out_dir=str(tmp_path / "out"), train=TrainConfig(epochs=3, batch_size=8))
    result = run_trial(cfg, callback=seen.append)
    assert [int(r["epoch"]) for r in seen] == [1, 2, 3]
    assert {"train_loss", "val_accuracy", "val_top3_accuracy", "val_macro_f1", "val_selection_score"} <= set(
        seen[0]
    )
    best = max(seen, key=lambda r: r["val_selection_score"])
    assert result.best_epoch == int(best["epoch"])
    ckpt = tmp_path / "out" / "best.safetensors"
    assert ckpt.read_bytes()[:8] != b"PK\x03\x04"  # not a pickle zip
    prepared = prepare(cfg)
    fresh = build_student("roberta-tiny", 20, vocab_size=prepared.tokenizer.vocab_size, max_length=64)
    load_model(fresh, str(ckpt))
    metrics, _, _ = evaluate(
        fresh, prepared.encoded["test"], get_task("exception"), 64, resolve_device("cpu")
    )
    assert metrics["accuracy"] == pytest.approx(result.test["accuracy"])
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["best_epoch"] == result.best_epoch and saved["params"] == result.params
    preds = json.loads((tmp_path / "out" / "test_predictions.json").read_text())
    assert len(preds["pred"]) == len(prepared.encoded["test"]) == len(preds["probs"])
    names = get_task("exception").label_names  # the indices' names beside them (issue 24)
    assert preds["label_name"] == [names[i] for i in preds["label"]] and len(set(preds["label_name"])) > 1
    assert preds["pred_name"] == [names[i] for i in preds["pred"]]


def test_measures_teacher_time_throughput_and_size(local_data, tiny_teacher, tmp_path):
    ft = run_trial(_cfg(local_data, tmp_path))
    kd = run_trial(_cfg(local_data, tmp_path, method="kd", teacher=str(tiny_teacher)))
    assert ft.teacher_seconds == 0.0 and kd.teacher_seconds > 0.0
    assert 0 < kd.teacher_seconds < kd.train_seconds
    assert ft.inference_samples_per_s > 0 and ft.params == sum(
        p.numel()
        for p in build_student(
            "roberta-tiny",
            20,
            vocab_size=prepare(_cfg(local_data, tmp_path)).tokenizer.vocab_size,
            max_length=64,
        ).parameters()
    )


def test_nan_loss_fails_the_trial_with_its_reason(local_data, tiny_teacher, tmp_path):
    cfg = _cfg(
        local_data,
        tmp_path,
        method="kd",
        teacher=str(tiny_teacher),
        method_params={"temperature": float("nan")},
    )
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        run_trial(cfg)


@pytest.mark.parametrize("student", ["roberta-tiny", "bigru-tiny"])
@pytest.mark.parametrize("method", ["dist", "pkd", "ckd"])
def test_every_method_trains_both_architectures_online(local_data, tiny_teacher, tmp_path, student, method):
    cfg = _cfg(
        local_data,
        tmp_path,
        student=student,
        method=method,
        teacher=str(tiny_teacher),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
    )
    result = run_trial(cfg)
    assert np.isfinite(result.history[-1]["train_loss"]) and result.steps == 6


def test_teacher_finetune_saves_a_loadable_teacher(local_data, tiny_teacher, tmp_path):
    from models.teacher import Teacher

    out = finetune_teacher(
        str(tiny_teacher),
        "defect",
        tmp_path / "t",
        str(local_data),
        TrainConfig(epochs=1, batch_size=8, lr=1e-3),
        max_length=64,
        max_samples=32,
    )
    assert (tmp_path / "t" / "finetune.json").exists() and out.result.best_epoch == 1
    teacher = Teacher.load(str(tmp_path / "t"), 2)
    assert teacher.num_labels == 2
    assert not list((tmp_path / "t").glob("**/*.bin")) and list((tmp_path / "t").glob("*.safetensors"))


def test_minilm_is_a_real_pretrained_teacher_that_fine_tunes_offline(local_data, tmp_path):
    out = finetune_teacher(
        "minilm",
        "exception",
        tmp_path / "minilm",
        str(local_data),
        TrainConfig(epochs=1, batch_size=16, lr=5e-5),
        max_length=64,
        max_samples=32,
    )
    assert out.result.params > 20_000_000
    assert np.isfinite(out.result.history[0]["train_loss"])


def _trial_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "orchestrator.trial", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_trial_command_line_prints_epochs_and_test_score(local_data, tiny_teacher, tmp_path):
    out = _trial_cli(
        "--task", "exception", "--student", "bigru-tiny", "--method", "kd", "--teacher", str(tiny_teacher),
        "--data", str(local_data), "--epochs", "2", "--max-samples", "40", "--max-length", "64",
        "--batch-size", "8", "--param", "temperature=4", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "epoch 1:" in out.stdout and "epoch 2:" in out.stdout and "val_accuracy=" in out.stdout
    assert "best epoch" in out.stdout and "test:" in out.stdout and "top3_accuracy=" in out.stdout


def test_trial_command_line_rejects_unknown_method(local_data, tmp_path):
    out = _trial_cli(
        "--task", "exception", "--student", "roberta-tiny", "--method", "distill", "--data", str(local_data),
        "--max-samples", "8",
    )  # fmt: skip
    assert out.returncode == 2 and "invalid choice: 'distill'" in out.stderr and "'ckd'" in out.stderr


def test_trial_command_line_labels_keeps_ft_on_the_labelled_part(local_data, tmp_path):
    # 24 labelled samples at batch 8 and one epoch: FT takes 3 steps (all 40 would take 5)
    out = _trial_cli(
        "--task", "exception", "--student", "roberta-tiny", "--method", "ft", "--data", str(local_data),
        "--epochs", "1", "--max-samples", "40", "--max-length", "32", "--batch-size", "8", "--labels", "count=24",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["steps"] == 3
    bad = _trial_cli(
        "--task", "exception", "--student", "roberta-tiny", "--method", "ft", "--data", str(local_data),
        "--labels", "count=lots",
    )  # fmt: skip
    assert bad.returncode == 2 and "--labels" in bad.stderr and "Traceback" not in bad.stderr


def test_label_levels_read_back_from_their_names():
    from tasks.labels import LabelSpec, LabelSpecError, level_name

    for raw in ({"count": 500}, {"fraction": 0.1, "seed": 2}, {"count": 7, "stratify": True}):
        spec = LabelSpec.parse(raw)
        assert LabelSpec.from_text(level_name(spec)) == spec
    assert LabelSpec.from_text("all") is None
    with pytest.raises(LabelSpecError, match="fraction"):
        LabelSpec.from_text("fraction=2")
