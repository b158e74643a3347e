"""Start-up and shut-down of a driver: a tracking server that does not answer fails fast with one line, and a study
that stops for any reason closes its parent run with the reason (what the driver started is stopped by
``driver.run_study``'s exit stack)."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from orchestrator.sweep.spec import StudyError

REACH_TIMEOUT_S = 10.0  # within the 15 s a user waits for "that server is not there"


def check_tracking(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise StudyError unless the tracking store at ``uri`` can be reached (HTTP: any answer will do)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                return
        except urllib.error.HTTPError:
            return  # it answered: a server without /health, or one behind a proxy
        except (TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise StudyError(
                f"MLflow tracking server {uri} (MLFLOW_TRACKING_URI) is unreachable: {reason}"
            ) from None
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
    reason = f"{type(err).__name__}: {err}".strip()[:4000] or type(err).__name__
    try:
        client.set_tag(parent, "error", reason)
        client.set_terminated(parent, status)
    except Exception:  # noqa: BLE001, S110 - MLflow itself may be what failed; the original error is raised
        pass


def stop_tree(pid: int, timeout: float = 20.0) -> None:
    """Stop a process this driver started and everything it started (``mlflow server`` runs its workers as
    children: stopping only the parent can leave them listening). SIGTERM first, SIGKILL what is left."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
