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


def test_the_servers_port_is_outside_rays_and_the_kernels_ranges() -> None:
    """Ray's workers take 10002-19999 and anything that binds port 0 an ephemeral port; the server is launched
    seconds after its port is chosen, while Ray starts (a Ray gRPC server once took it meanwhile)."""
    low = tracking._ephemeral_low()
    ports = {tracking._free_port() for _ in range(20)}
    assert all(tracking.PORT_FLOOR <= p < low for p in ports), ports


def _foreign(reply: bytes) -> tuple[object, int]:
    """A listening socket of this test (not the server's) that answers every connection with ``reply``."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_an_answer_from_another_program_on_the_port_is_not_the_servers(tmp_path: Path) -> None:
    """A gRPC server (its HTTP/2 frames are no HTTP/1 status line) or another study's MLflow (/health 200) on the
    port: the server is not taken as ready; it was a traceback (BadStatusLine), or the study logging elsewhere."""
    import subprocess
    import sys

    import pytest

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
    grpc = b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x04\x00\x40\x00\x00\x00\x05\x00\x40\x00\x00"
    for reply in (grpc, ok):
        sock, port = _foreign(reply)
        idle = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"]
        )  # ours: listens nowhere
        server = tracking.MlflowServer(f"http://127.0.0.1:{port}", "", tmp_path, idle, tmp_path / "log")
        try:
            with pytest.raises(TimeoutError, match="did not answer"):
                server._await(3)
        finally:
            idle.kill()
            idle.wait()
            sock.close()


def test_a_taken_port_is_one_line_saying_so(tmp_path: Path) -> None:
    import pytest

    sock, port = _foreign(b"")
    try:
        server = tracking.start_server(tmp_path / "storage", port=port, wait=False)
        with pytest.raises(RuntimeError) as err:
            server.wait_ready(180)
    finally:
        sock.close()
    assert str(err.value).startswith(
        f"the MLflow server could not listen on http://127.0.0.1:{port}: another"
    )
    assert "\n" not in str(err.value)
    assert server.process is not None and server.process.poll() is not None


def test_a_server_left_by_a_killed_driver_is_stopped_by_the_next_one(tmp_path: Path) -> None:
    """A driver killed with SIGKILL cannot stop its server (the server runs in its own session): the next driver of
    the study stops it before starting its own, instead of leaving a second server beside it. A record whose PID
    now belongs to another program is left alone."""
    import subprocess
    import sys

    storage = tmp_path / "storage"
    first = tracking.start_server(storage, timeout=180, study="s")
    orphan = psutil.Process(first.process.pid)
    assert first.pid_file.is_file()
    second = tracking.start_server(storage, timeout=180, study="s")  # as the next driver, holding the lock
    try:
        orphan.wait(timeout=30)  # stopped by the second start (SIGTERM to its process group)
        assert not orphan.is_running() and second.process.poll() is None
        assert second.pid_file.is_file()
    finally:
        second.stop()
    assert not second.pid_file.exists()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from orchestrator.core.process import record_process, stop_orphan

        record_process(second.pid_file, other.pid)  # not an mlflow server of this store: kept running
        assert stop_orphan(second.pid_file, second.cmd[:6]) is None and other.poll() is None
    finally:
        other.kill()
        other.wait()
