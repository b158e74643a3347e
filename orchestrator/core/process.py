"""A study process's set-up: its environment (set by the command's ``main`` or ``run_study``, never at import), Ray
started on loopback with its temp folder under the storage (or joined), and stopping what the driver started."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from orchestrator.core.log import QUIET, VERBOSE_ENV, log, verbose
from orchestrator.core.paths import ray_temp_dir, remove_link

LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: a Ray started here listens on 127.0.0.1 only (docs/ARCHITECTURE.md)


def study_env(address: str | None = None) -> None:
    """Quiet telemetry and tokenizers, a relative SQLite ``MLFLOW_TRACKING_URI`` made absolute, and keep a Ray
    started here on loopback. Ray reads ``LOOPBACK`` when it is first imported, so a command calls this before
    anything imports ray; a driver joining a cluster (``address`` or RAY_ADDRESS) starts no Ray here and leaves it
    alone."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Ctrl-C stops the study as interrupted (KeyboardInterrupt: its runs and parent KILLED), not as a Tune run that
    # ended early and whose lost trials look like failures.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if not (address or os.environ.get("RAY_ADDRESS")):
        os.environ.setdefault(LOOPBACK, "0")
    if os.environ.get("MLFLOW_TRACKING_URI"):  # a relative SQLite path, pinned for trials in other folders
        from orchestrator.core.store import absolute_sqlite_uri

        os.environ["MLFLOW_TRACKING_URI"] = absolute_sqlite_uri(os.environ["MLFLOW_TRACKING_URI"])


# Since Ray 2.48 (ray-project/ray#54868) a task or trial that asked for no GPU still sees every GPU of its node, so
# on a GPU machine a `gpu: 0` trial would resolve `device: auto` to an unreserved cuda:0 (and bf16). This restores
# the hiding: what asks for no GPU runs on the CPU, and a GPU is used only where Ray reserved it.
HIDE_UNASKED_GPUS = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}


def worker_env() -> dict[str, str]:
    """Variables every Ray worker of the study needs: how quiet it is (declared tasks travel in the trial config)
    and that a worker given no GPU sees none."""
    return {**HIDE_UNASKED_GPUS, **{k: os.environ[k] for k in (*QUIET, VERBOSE_ENV) if k in os.environ}}


def start_ray(
    address: str | None, env: dict[str, str], storage: Path | None = None
) -> tuple[bool, Path | None]:
    """Join ``address`` (or RAY_ADDRESS) or start Ray here with its temp folder under the storage and ``env`` (plus
    ``worker_env``) for every worker. Returns (whether this call started Ray, a symlink to remove once it stops)."""
    address = address or os.environ.get("RAY_ADDRESS")
    study_env(address)  # before ray is imported (a no-op when it was set already)
    import ray

    if ray.is_initialized():
        return False, None
    if address:
        # Joining a cluster (or running as a Ray job): the job's own runtime environment (its working_dir) is
        # merged with ours (Ray >= 2.8), which only adds quietness and GPU hiding; trials get the tracking URI as a
        # parameter.
        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": worker_env()})
        return True, None
    temp_dir, link, note = ray_temp_dir(storage) if storage is not None else (None, None, None)
    if note:
        log(note)
    try:
        ray.init(
            address="local",
            runtime_env={"env_vars": {**env, **worker_env()}},
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=temp_dir,
            logging_level="INFO" if verbose() else "WARNING",
        )
    except BaseException:
        remove_link(link)  # a start that failed leaves no /tmp/kdr-* behind: the caller never saw the link
        raise
    return True, link


def terminate_tree(pid: int) -> list:
    """SIGTERM to a process and everything it started, without waiting; returns them (empty: it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    return family


def stop_tree(pid: int, timeout: float = 20.0) -> None:
    """Stop a process this driver started and everything it started (``mlflow server`` runs its workers as
    children: stopping only the parent can leave them listening). SIGTERM first, SIGKILL what is left."""
    import psutil

    family = terminate_tree(pid)
    if not family:
        return
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def stop_group(pgid: int, timeout: float = 10.0) -> None:
    """Stop every process of the process group ``pgid`` (a server this driver started in its own session): SIGTERM,
    then SIGKILL what is left after ``timeout``."""
    import signal
    import time

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return  # no process of the group is left
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


def record_process(path: Path, pid: int) -> None:
    """Write ``pid``, its start time and this host to ``path``: what ``stop_orphan`` needs to find it again."""
    import json
    import socket

    import psutil

    started = psutil.Process(pid).create_time()
    path.write_text(json.dumps({"pid": pid, "create_time": started, "host": socket.gethostname()}))


def stop_orphan(path: Path, command: list[str]) -> int | None:
    """Stop the process group ``record_process`` wrote to ``path``, left running by a driver that died (SIGKILL, a
    power cut) without stopping it; the caller holds the study's lock, so no live driver uses it. Only a process
    on this host, started when the record says (not a reused PID) and whose command line holds every string of
    ``command``. Returns its PID when it stopped one; the record is removed either way."""
    import json
    import socket

    import psutil

    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    try:
        if rec["host"] != socket.gethostname():
            return None
        proc = psutil.Process(rec["pid"])
        if abs(proc.create_time() - rec["create_time"]) > 0.01 or not all(
            c in proc.cmdline() for c in command
        ):
            return None
    except (psutil.Error, KeyError, TypeError):
        return None
    stop_group(rec["pid"])
    return int(rec["pid"])
