"""Every entry point answers a user's mistake with one ``error:`` line and exit status 2, no traceback (issue 24):
run as a user runs them, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _one_line(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["orchestrator.trial", "--task", "exception", "--student", "roberta-tiny", "--method", "ft"],
            "--data: folder {missing} does not exist; build it with `python -m tasks.build_local",
        ),
        (
            [
                "orchestrator.finetune_teacher",
                "--task",
                "exception",
                "--teacher",
                "random:roberta",
                "--out",
                "t",
            ],
            "--data: folder {missing} does not exist",
        ),
    ],
    ids=["trial", "finetune_teacher"],
)
def test_training_commands_on_a_missing_data_folder(tmp_path: Path, args: list[str], expected: str) -> None:
    missing = tmp_path / "no-such-folder"
    line = _one_line(tmp_path, *args, "--data", str(missing))
    assert expected.format(missing=missing) in line


def test_trial_on_a_kd_method_without_teacher_and_an_unknown_param(tmp_path: Path, local_data: Path) -> None:
    base = [
        "orchestrator.trial",
        "--task",
        "exception",
        "--student",
        "roberta-tiny",
        "--data",
        str(local_data),
    ]
    assert "--method kd needs a teacher" in _one_line(tmp_path, *base, "--method", "kd")
    line = _one_line(tmp_path, *base, "--method", "ft", "--param", "temperature=2")
    assert "unknown hyperparameter(s) ['temperature'] for method 'ft'; valid: []" in line


def test_build_local_on_an_unknown_task(tmp_path: Path) -> None:
    line = _one_line(tmp_path, "tasks.build_local", "--out", str(tmp_path / "d"), "--tasks", "nope")
    assert "invalid choice: 'nope'" in line and "exception" in line


def test_completion_score_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "answers.json"
    line = _one_line(
        tmp_path, "tasks.completion", "score", "--answers", str(missing), "--predictions", "p.txt"
    )
    assert str(missing) in line
