"""The study's own MLflow server, watched: a server that stops during a study (killed, out of memory) is started
again on the same store and port within seconds, so the driver and the running trials (whose MLflow clients retry
for about two minutes) go on. A server that cannot be started again stops the study with one line instead of a
half-hour hang on connection retries."""

from __future__ import annotations

import _thread
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from orchestrator.core.log import log
from orchestrator.core.process import stop_group

POLL_S = 1.0
RESTART_TIMEOUT_S = 60.0


class ServerWatch(threading.Thread):
    """A daemon thread polling the server process; see the module docstring."""

    def __init__(self, server: Any) -> None:
        super().__init__(name="mlflow-server-watch", daemon=True)
        self.server = server
        self.stopping = threading.Event()
        self.restarts = 0
        self.failure: str | None = None

    def run(self) -> None:
        while not self.stopping.wait(POLL_S):
            proc = self.server.process
            if proc is None or proc.poll() is None:
                continue
            if self.stopping.is_set():
                return
            self._restart(proc.pid, proc.returncode)

    def _restart(self, pid: int, code: int) -> None:
        log(
            f"MLflow server (PID {pid}) stopped (exit code {code}); starting it again on the same store and port"
        )
        stop_group(pid)  # whatever is left of it (a worker still holding the port)
        try:
            self.server.launch("a")
            self.server.wait_ready(RESTART_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - said in one line, then the study stops
            self.failure = f"the MLflow server stopped and could not be started again: {err}".splitlines()[0]
            log(f"error: {self.failure}; its log: {self.server.log}")
            self.stopping.set()
            _thread.interrupt_main()  # the driver stops as interrupted: its runs KILLED where MLflow answers
            return
        self.restarts += 1
        log(f"MLflow server running again (PID {self.server.process.pid}): {self.server.uri}")


@contextlib.contextmanager
def watched(server: Any | None) -> Iterator[ServerWatch | None]:
    """Watch ``server`` (our own; a user's server is theirs) for the block's duration."""
    if server is None or server.cmd is None:
        yield None
        return
    watch = ServerWatch(server)
    watch.start()
    try:
        yield watch
    finally:
        watch.stopping.set()
        watch.join(timeout=RESTART_TIMEOUT_S + 5)
