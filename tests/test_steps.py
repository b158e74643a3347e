"""``student_train.steps``: every method trains for the same number of optimiser steps, whatever inputs it reads (FT
the labelled part, a KD method every input), so a labels study compares methods at one budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import smoke_variant

from orchestrator.core.errors import StudyError
from orchestrator.design.study import build_plan
from orchestrator.train.config import TrainConfig
from orchestrator.train.trial import TrialConfig, run_trial

ROOT = Path(__file__).resolve().parent.parent


def test_steps_set_the_epochs_of_each_split() -> None:
    cfg = TrainConfig(epochs=9, batch_size=8, steps=20)
    # 40 samples: 5 batches an epoch, 4 epochs; 100: 13 batches, 2 epochs (the second partial)
    assert (cfg.for_split(40).epochs, cfg.for_split(40).max_steps) == (4, 20)
    assert (cfg.for_split(100).epochs, cfg.for_split(100).max_steps) == (2, 20)
    assert TrainConfig(epochs=9, batch_size=8).for_split(100).epochs == 9  # no steps: unchanged
    assert TrainConfig(batch_size=8, steps=20, max_steps=3).for_split(100).max_steps == 3  # a cap still caps
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)


def test_ft_on_the_labelled_part_and_kd_on_every_input_take_the_same_steps(
    local_data, tiny_teacher, tmp_path
):
    def trial(method: str) -> TrialConfig:
        return TrialConfig(
            task="exception", student="roberta-tiny", method=method, teacher=str(tiny_teacher),
            data=str(local_data), max_length=32, max_samples=40, labels={"count": 16},
            cache_dir=str(tmp_path / "cache"), train=TrainConfig(epochs=1, batch_size=8, lr=2e-3, steps=6),
        )  # fmt: skip

    ft, kd = run_trial(trial("ft")), run_trial(trial("kd"))
    assert ft.steps == kd.steps == 6
    # FT's 16 labelled samples are 2 batches an epoch (3 epochs); KD's 40 inputs 5 (2 epochs, the second partial)
    assert (len(ft.history), len(kd.history)) == (3, 2)


def test_a_study_passes_steps_to_every_trial_and_prices_them_alike(tmp_path: Path) -> None:
    plain = build_plan(smoke_variant(tmp_path), calibration=None)
    assert all("steps" not in t.settings["train"] for t in plain.trials)  # without it: the keys of before
    train = {"epochs": 2, "batch_size": 8, "lr": 0.001, "max_length": 64, "steps": 30}
    plan = build_plan(smoke_variant(tmp_path, student_train=train, labels={"count": 40}), calibration=None)
    assert {t.work.train.steps for t in plan.trials} == {30}
    assert {t.trial_key for t in plan.trials}.isdisjoint({t.trial_key for t in plain.trials})
    # FT reads 40 labelled samples, KD 100 inputs: with steps, both read steps x batch (same student and task)
    ft = next(
        t for t in plan.trials if t.method == "ft" and t.task == "defect" and t.student == "roberta-tiny"
    )
    kd = next(
        t for t in plan.trials if t.method == "kd" and t.task == "defect" and t.student == "roberta-tiny"
    )
    assert ft.gpu_seconds == pytest.approx(kd.gpu_seconds)
    assert ft.params["steps"] == 30 and "steps" not in plain.trials[0].params  # the MLflow param


def test_steps_is_a_student_setting_and_not_one_for_tuning(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"student_train.steps: tuning budgets trials in epochs") as err:
        smoke_variant(tmp_path, student_train={"steps": 30}, tuning={"samples": 2, "max_epochs": 2})
    assert "s.yaml:" in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises(StudyError, match=r"teacher_train.steps"):
        smoke_variant(tmp_path, teacher_train={"steps": 30})
    with pytest.raises(StudyError, match=r"student_train.steps: .*greater than or equal to 1"):
        smoke_variant(tmp_path, student_train={"steps": 0})


def test_trial_command_line_takes_steps(local_data, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        base = [
            "--task",
            "exception",
            "--student",
            "roberta-tiny",
            "--method",
            "ft",
            "--data",
            str(local_data),
        ]
        cmd = [sys.executable, "-m", "orchestrator.trial", *base, *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)

    out = cli(
        "--steps",
        "4",
        "--max-samples",
        "40",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--labels",
        "count=8",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["steps"] == 4  # the command's --epochs default (5) would be 5 steps: 8 labels, batch 8
    assert [line.split()[:2] for line in out.stdout.splitlines() if line.startswith("epoch")][-1] == [
        "epoch",
        "4:",
    ]
    bad = cli("--steps", "0")
    assert (
        bad.returncode == 2
        and "error: --steps must be >= 1, got 0" in bad.stderr
        and "Traceback" not in bad.stderr
    )
