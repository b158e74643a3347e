"""MLflow: the study's own tracking server when ``MLFLOW_TRACKING_URI`` is unset, and the run bookkeeping that makes
a study resumable (a trial is done when its ``trial_key`` has a FINISHED ``student`` run)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from orchestrator.core.errors import StudyError
from orchestrator.core.log import log
from orchestrator.core.paths import local_store, server_log
from orchestrator.core.probe import unreachable_reason
from orchestrator.core.process import record_process, stop_group, stop_orphan, stop_tree, terminate_tree
from orchestrator.core.store import init_store

REACH_TIMEOUT_S = 10.0  # within the 15 s a user waits for "that server is not there"

FACTOR_TAGS = (
    "task",
    "teacher",
    "student",
    "student_arch",
    "student_params",
    "method",
    "method_family",
    "seed",
)


# Ray's workers listen on 10002-19999 (its default worker port range) and every process that binds port 0 gets one
# of the kernel's ephemeral ports; the server is launched seconds after its port is chosen, while Ray starts, so its
# port comes from neither (a port handed out by bind(0) was once taken by a Ray gRPC server meanwhile).
PORT_FLOOR = 20_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _free_port(host: str = "127.0.0.1", tries: int = 64) -> int:
    """A port free now, between Ray's worker ports and the ephemeral range when there is room, else any free one."""
    import random

    low = _ephemeral_low()
    for port in random.sample(range(PORT_FLOOR, low), min(tries, max(low - PORT_FLOOR, 0))):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    """An ``mlflow server`` this process started (SQLite store and artifacts under the storage path)."""

    uri: str
    store_uri: str
    artifacts: Path
    process: subprocess.Popen | None
    log: Path
    cmd: list[str] | None = None  # how it was started: a lost server is started again the same way
    env: dict[str, str] | None = None
    starting: threading.Thread | None = None  # creating the store and launching, while the caller starts Ray
    start_error: BaseException | None = None

    def start_in_background(self) -> None:
        """Create (or migrate) the store, then launch, in a thread: MLflow's schema migration of a new store takes
        seconds of CPU that overlap Ray's start. ``wait_ready`` and ``stop`` wait for the thread first."""

        def start() -> None:
            try:
                init_store(self.store_uri)
                self.launch()
            except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread by wait_ready
                self.start_error = err

        self.starting = threading.Thread(target=start, name="mlflow-server-start", daemon=True)
        self.starting.start()

    def _started(self) -> None:
        if self.starting is not None:
            self.starting.join()
            self.starting = None
        if self.start_error is not None:
            err, self.start_error = self.start_error, None
            raise err

    def launch(self, mode: str = "w") -> None:
        """Start the server process (``mode="a"``: again, appending to its log)."""
        assert self.cmd is not None
        # A server of this study whose driver was killed (its own session survives that): stopped, not left beside
        # this one holding its memory and port (the study's lock says no live driver uses it).
        if orphan := stop_orphan(self.pid_file, self.cmd[:6]):
            log(f"stopped the MLflow server (PID {orphan}) an earlier driver of this study left running")
        # Its own session and process group: Ctrl-C in the terminal reaches the driver, which still records the
        # runs it stops in MLflow, and stop() ends every process of the server by its group.
        self.process = subprocess.Popen(
            self.cmd,
            stdout=self.log.open(mode),
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        record_process(self.pid_file, self.process.pid)

    @property
    def pid_file(self) -> Path:
        return self.log.with_suffix(".pid.json")

    def terminate(self) -> None:
        """Ask the server and its workers to stop, without waiting: its graceful shutdown (seconds) then overlaps
        Ray's; ``stop`` waits for it."""
        if self.starting is None and self.process is not None and self.process.poll() is None:
            terminate_tree(self.process.pid)

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # a store that could not be made: nothing was launched
            self._started()
        if self.process:
            stop_tree(self.process.pid)  # its workers too
            self.process.wait(timeout=5)  # reaped: a zombie leader would keep its group "alive"
            # and its whole process group: workers whose parent was killed (by the user) are no one's children
            stop_group(self.process.pid)
            self.pid_file.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until ``/health`` answers; RuntimeError (with the log's tail) if it exits, TimeoutError if it is slow."""
        try:
            self._started()
            self._await(timeout)
        except BaseException:  # not answering, exited, or interrupted: leave nothing of it running
            self.stop()
            raise

    def _await(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                if "address already in use" in tail.lower():
                    raise RuntimeError(
                        f"the MLflow server could not listen on {self.uri}: another program took that port "
                        f"while the study started; run the study again (its log: {self.log})"
                    )
                raise RuntimeError(
                    f"mlflow server exited with code {self.process.returncode}; its log: {self.log}\n" + tail
                )
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200 and self._listening():
                        return
            except (OSError, http.client.HTTPException):  # nothing there yet, or not an HTTP/1 server (gRPC)
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"mlflow server did not answer at {self.uri} within {timeout:.0f} s; its log: {self.log}"
        )

    def _listening(self) -> bool:
        """True when the process tree this object started holds the listening socket of its port: a /health
        answer from another program on that port (another study's server) is not this server's."""
        if self.process is None:
            return True
        import psutil

        port = int(self.uri.rsplit(":", 1)[-1])
        try:
            root = psutil.Process(self.process.pid)
            for proc in (root, *root.children(recursive=True)):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                        return True
        except psutil.AccessDenied:
            return True  # cannot tell: trust the answer
        except psutil.NoSuchProcess:
            return False
        return False

    def ui_command(self, port: int | None = None) -> str:
        """How to browse the store once this server is gone: on the port it used (free again then; 5000 may not be)."""
        if (
            port is None
        ):  # the port this server used; a store opened without one (the fast path): MLflow's 5000
            tail = self.uri.rsplit(":", 1)[-1] if self.uri.startswith("http") else ""
            port = int(tail) if tail.isdigit() else 5000
        return (
            f"mlflow server --backend-store-uri {self.store_uri} --artifacts-destination {self.artifacts} "
            f"--host 127.0.0.1 --port {port}   # then open http://127.0.0.1:{port}"
        )


# MLflow 3.x starts a job runner and seven huey consumers (about 1.3 GB RSS, 8 processes) for server-side jobs the
# study never submits; without them the server is 5 processes (docs/benchmarks/mlflow_server_footprint_cpu.json).
LEAN_SERVER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def server_env(storage: str | Path) -> dict[str, str]:
    """The environment of the server this study starts (only that server: a user's own tracking server is theirs to
    configure): no job execution, and its temp files (``db_init_lock-*``) under ``<storage>/tmp``, not /tmp."""
    tmp = Path(storage).resolve() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **LEAN_SERVER, "TMPDIR": str(tmp)}


def start_server(
    storage: str | Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 90.0,
    wait: bool = True,
    study: str | None = None,
) -> MlflowServer:
    """Start ``mlflow server`` bound to ``host`` (loopback by default) and wait until it answers (``wait=False``:
    return at once, the store made and the server launched in a thread; call ``wait_ready`` before using it, so
    the caller can start Ray meanwhile)."""
    store_uri, artifacts = local_store(storage)
    port = port or _free_port(host)
    log = server_log(storage, study)  # under the storage, beside the store it serves
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    # Its own session and process group: Ctrl-C in the terminal reaches the driver, which still records the runs
    # it stops in MLflow, and stop() ends every process of the server by its group.
    server = MlflowServer(f"http://{host}:{port}", store_uri, artifacts, None, log, cmd, server_env(storage))
    if not wait:
        server.start_in_background()
        return server
    init_store(store_uri)
    server.launch()
    server.wait_ready(timeout)
    return server


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def search_all(client: MlflowClient, exp_id: str, filter_string: str = "") -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_by_stage(client: MlflowClient, exp_id: str, stage: str, status: str | None = None) -> list[Any]:
    flt = f"tags.stage = '{stage}'"
    if status:
        flt += f" and attributes.status = '{status}'"
    return search_all(client, exp_id, flt)


def finished_keys(client: MlflowClient, exp_id: str, stage: str = "student") -> set[str]:
    return {r.data.tags.get("trial_key") for r in runs_by_stage(client, exp_id, stage, "FINISHED")}


def finished_run(
    client: MlflowClient, exp_id: str, stage: str, key: str, key_tag: str = "trial_key"
) -> Any | None:
    """The experiment's FINISHED run of ``stage`` whose ``key_tag`` is ``key`` (a completion teacher's run is keyed
    by ``teacher_key``), or None."""
    flt = f"tags.stage = '{stage}' and tags.{key_tag} = '{key}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([exp_id], filter_string=flt, max_results=1)
    return runs[0] if runs else None


def mark_stale_running(client: MlflowClient, exp_id: str, reason: str) -> int:
    """Runs left RUNNING by a driver that was killed: mark them KILLED so they count as neither done nor live."""
    stale = search_all(client, exp_id, "attributes.status = 'RUNNING' and tags.stage != 'study'")
    for run in stale:
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    return len(stale)


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    flat = {
        k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v))
        for k, v in params.items()
    }
    items = [Param(k, v[:6000]) for k, v in sorted(flat.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
    if items:
        client.log_batch(run_id, metrics=items)


def log_json_artifact(client: MlflowClient, run_id: str, payload: Any, artifact_path: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload))
        client.log_artifact(run_id, str(path), artifact_path)


def record_failure(client: MlflowClient, run_id: str, err: BaseException) -> None:
    """A trial that raised: its reason and traceback as tags, the run FAILED (the study goes on; Tune retries)."""
    import traceback

    client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:4000])
    client.set_tag(run_id, "traceback", traceback.format_exc()[-4000:])
    client.set_terminated(run_id, "FAILED")


def check_tracking(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise StudyError unless the tracking store at ``uri`` can be reached (HTTP: any answer will do)."""
    if uri.startswith(("http://", "https://")):
        reason = unreachable_reason(uri, timeout)
        if reason is not None:
            raise StudyError(f"MLflow tracking server {uri} (MLFLOW_TRACKING_URI) is unreachable: {reason}")
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise StudyError(f"MLflow tracking store {uri}: folder {folder} does not exist")
    elif uri.startswith("file:") or "://" not in uri:
        return
    elif not uri.startswith(("databricks", "postgresql", "mysql", "mssql")):
        raise StudyError(f"MLflow tracking URI {uri}: unknown scheme")


def close_parent(client: Any, parent: str | None, err: BaseException) -> None:
    """Mark the study's parent run FAILED (KILLED when interrupted) with the reason, if MLflow still answers."""
    if parent is None:
        return
    status = "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED"
    if isinstance(err, KeyboardInterrupt):  # it carries no message: say what happened and what to do
        reason = "KeyboardInterrupt: the study was interrupted (Ctrl-C or a signal); run the same command to resume"
    else:
        reason = f"{type(err).__name__}: {err}".strip().removesuffix(":")[:4000]
    try:
        client.set_tag(parent, "error", reason)
        client.set_terminated(parent, status)
    except Exception:  # noqa: BLE001, S110 - MLflow itself may be what failed; the original error is raised
        pass
