"""The study's own ``mlflow server`` is started lean (issue 24): no job runner and no huey consumers, temp files
under the storage. Started the real way (``tracking.start_server``) and stopped by its PID's process tree."""

from __future__ import annotations

from pathlib import Path

import psutil

from orchestrator.core import tracking


def test_embedded_server_is_lean_and_keeps_its_temp_files_under_the_storage(tmp_path: Path) -> None:
    server = tracking.start_server(tmp_path / "storage", timeout=180)
    try:
        root = psutil.Process(server.process.pid)
        tree = [root, *root.children(recursive=True)]
        cmds = [" ".join(p.cmdline()) for p in tree]
        env = root.environ()
    finally:
        server.stop()
    # mlflow server, uvicorn, its resource tracker and 2 workers; job execution would add a runner and 7 consumers
    assert len(tree) <= 5, cmds
    assert not any("huey_consumer" in c or "_job_runner" in c for c in cmds), cmds
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["TMPDIR"] == str((tmp_path / "storage" / "tmp").resolve())
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)


def test_the_lean_settings_are_the_servers_alone(tmp_path: Path, monkeypatch) -> None:
    """The driver's own environment (and a user's own server, which reads theirs) is left as it was."""
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    env = tracking.server_env(tmp_path)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    import os

    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" not in os.environ
