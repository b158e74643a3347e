"""One driver per study: a lock file under the study's folder (``<storage>/<name>/driver.lock``).

The file is created atomically (``os.link`` of a complete temporary file: it exists with its content or not at
all, also on NFS) and holds its holder's host, PID, process start time and a random token. A second driver is
refused with a message naming the holder, or waits for it (``--wait``). A lock whose holder is dead on this host
(no such PID, or the PID now belongs to a younger process) is stale and taken over; the takeover runs under an
``flock`` of a guard file and re-reads the lock first, so two drivers taking over the same stale lock cannot both
win, and a fresh lock written in between is never removed. A holder on another host cannot be checked from here:
it counts as live, and the message says which file to delete if that driver is gone.

Everything a driver does to the study's shared state (fine-tunes, caches, trials, marking orphaned runs KILLED)
happens while it holds the lock, so no driver can mark another live driver's runs KILLED.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.core.errors import StudyError

LOCK_NAME = "driver.lock"


class StudyLocked(StudyError):
    """Another live driver holds the study."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str  # when the driver took the lock (UTC, ISO 8601)
    process_start: float  # the PID's start time: tells a reused PID from the holder
    token: str

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return cls(socket.gethostname(), pid, since, _process_start(pid) or 0.0, uuid.uuid4().hex)

    def describe(self) -> str:
        return f"host {self.host}, PID {self.pid}, since {self.since}"

    def alive(self) -> bool:
        """False only when the holder is certainly gone: on this host, and its PID is dead or reused."""
        if self.host != socket.gethostname():
            return True
        start = _process_start(self.pid)
        return start is not None and abs(start - self.process_start) < 1.0


class StudyLock:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.mine: Holder | None = None

    def holder(self) -> Holder | None:
        """Who holds the lock now (None: nobody, or a file that is not a lock: taken over as stale)."""
        try:
            return Holder(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _try_create(self, me: Holder) -> bool:
        tmp = self.folder / f".{LOCK_NAME}.{me.token}"
        tmp.write_text(json.dumps(asdict(me)))
        try:
            os.link(tmp, self.path)  # atomic, fails when the lock exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        with (self.folder / f".{LOCK_NAME}.guard").open("a") as g:
            fcntl.flock(g, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(g, fcntl.LOCK_UN)

    def _take_over_stale(self, seen: Holder | None) -> None:
        """Remove the lock if it is still the stale one we saw (re-read under the guard)."""
        with self._guard():
            if not self.path.exists():
                return
            now = self.holder()
            same = now == seen
            if same and (now is None or not now.alive()):
                self.path.unlink(missing_ok=True)

    def acquire(
        self, wait: bool = False, poll: float = 2.0, say: Callable[[str], None] | None = None
    ) -> Holder:
        """Take the lock; with ``wait`` poll until the holder lets go, else raise StudyLocked naming it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        me = Holder.me()
        announced = False
        while True:
            if self._try_create(me):
                self.mine = me
                return me
            held = self.holder()
            if held is None or not held.alive():
                if say:
                    who = held.describe() if held else "unreadable lock file"
                    say(f"taking over the stale lock {self.path} ({who}: that driver is gone)")
                self._take_over_stale(held)
                continue
            if not wait:
                raise StudyLocked(self.refusal(held))
            if say and not announced:
                say(f"waiting for the driver holding {self.path} ({held.describe()})")
                announced = True
            time.sleep(poll)

    def refusal(self, held: Holder) -> str:
        hint = "" if held.host == socket.gethostname() else f"; if that driver is gone, delete {self.path}"
        return (
            f"study folder {self.folder} is in use by another driver ({held.describe()}); "
            f"pass --wait to wait for it, or --status to follow it{hint}"
        )

    def release(self) -> None:
        if self.mine and self.holder() == self.mine:
            self.path.unlink(missing_ok=True)
        self.mine = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
