"""Every entry point answers a user's mistake with one ``error:`` line and exit status 2, no traceback (issue 24):
run as a user runs them, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _one_line(tmp_path: Path, *args: str, tracking_uri: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
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


def test_trial_logging_to_a_sqlite_store_in_a_missing_folder(tmp_path: Path, local_data: Path) -> None:
    missing = tmp_path / "no-such-folder"
    args = ["orchestrator.trial", "--task", "exception", "--student", "roberta-tiny", "--method", "ft"]
    line = _one_line(
        tmp_path, *args, "--data", str(local_data), tracking_uri=f"sqlite:///{missing}/mlflow.db"
    )
    assert f"folder {missing} does not exist" in line and not missing.exists()


def test_build_local_on_an_unknown_task(tmp_path: Path) -> None:
    line = _one_line(tmp_path, "tasks.build_local", "--out", str(tmp_path / "d"), "--tasks", "nope")
    assert "invalid choice: 'nope'" in line and "exception" in line


def test_completion_score_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "answers.json"
    line = _one_line(
        tmp_path, "tasks.completion", "score", "--answers", str(missing), "--predictions", "p.txt"
    )
    assert str(missing) in line


def test_a_full_disk_is_recognised_however_deep_the_ray_tasks_wrapped_it(tmp_path: Path) -> None:
    """The cache build's shards run as Ray tasks inside the cache unit's Ray task: the driver sees a task error
    wrapping a task error wrapping numpy's short write (no errno) or the OSError that names the shard's file."""
    import errno

    from ray.exceptions import RayTaskError

    from orchestrator.core.errors import disk_full

    def wrapped(cause: BaseException) -> BaseException:
        inner = RayTaskError("build_shard", "tb", cause)
        return RayTaskError("_build_cache_unit", "tb", inner.as_instanceof_cause())

    shard = tmp_path / "teacher_cache" / "x" / "logits.npy"
    named = disk_full(wrapped(OSError(errno.ENOSPC, "No space left on device", str(shard))), tmp_path)
    assert named is not None and f"writing {shard}" in str(named), named
    quota = disk_full(wrapped(OSError(errno.EDQUOT, "Disk quota exceeded")), tmp_path)
    assert quota is not None and "Disk quota exceeded" in str(quota) and f"under {tmp_path}" in str(quota)
    short = disk_full(wrapped(OSError("531729 requested and 277472 written")), tmp_path)
    assert short is not None and str(short).startswith("storage: the disk is full")
    assert disk_full(wrapped(OSError(errno.ENOENT, "No such file or directory")), tmp_path) is None
    assert disk_full(ValueError("bad value"), tmp_path) is None


def test_a_ray_address_nobody_answers_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """ray.init retries such an address for minutes (C++ warnings, deaf to SIGTERM), after the study had started
    its MLflow server; now one line within seconds, and no server, Ray or data under the storage."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    storage = tmp_path / "st"
    line = _one_line(
        tmp_path, "orchestrator.study", "smoke", "--storage", str(storage), "--address", f"127.0.0.1:{port}"
    )
    assert line.startswith(f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (")
    assert (
        not (storage / "mlflow").exists()
        and not (storage / "data").exists()
        and not (storage / "ray").exists()
    )
    line = _one_line(
        tmp_path, "orchestrator.study", "smoke", "--storage", str(storage), "--address", "nowhere"
    )
    assert "not host:port" in line
