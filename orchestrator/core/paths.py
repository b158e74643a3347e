"""Where a study's files go: everything under ``--storage`` (Ray's temp folder, trial scratch, the MLflow store and
server log, default data), and the content keys that name what is stored there.

What still lands outside the storage (docs/OWN_DATA.md, "Where files go"): Ray's own ``~/.ray`` (its token auth
file, when Ray enables token auth), a short symlink ``/tmp/kdr-<hash>-<pid>`` while a study whose storage path is too long
for Unix sockets runs (removed at the end), and the study index ``studies.json`` (``KDSTUDY_STATE_DIR``, default
``~/.local/state/kdstudy``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Ray puts Unix sockets at <temp>/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store: about 64 characters
# after the temp folder, and a socket path may hold at most 107 (Linux sun_path).
SOCKET_PATH_MAX = 107
RAY_SESSION_SUFFIX = 66


def stable_key(payload: Any) -> str:
    """A short content hash of JSON-able settings (trial keys, unit keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scratch_dir(storage: str | Path, study: str) -> Path:
    """Where trials write checkpoints before MLflow takes them (emptied as each trial ends)."""
    return Path(storage) / study / "scratch"


@contextlib.contextmanager
def scratch(folder: str | Path, prefix: str = "trial-") -> Iterator[Path]:
    """A fresh folder under ``folder`` (the study's scratch, under the storage, not /tmp), removed afterwards."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# The folders each thread of this process holds ``exclusive`` on: a nested hold in the same thread does not block
# on itself (an flock taken twice through two open files would), another thread's hold still waits.
_HELD: set[tuple[Path, int]] = set()


@contextlib.contextmanager
def exclusive(final: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on writing ``final`` (an ``flock`` of ``.<name>.lock`` beside it), waiting for any
    other process that holds it. Two studies started together on one storage may both write the same folder (the
    random base teacher): without it the second removed the first's partial folder mid-write."""
    import fcntl

    final = Path(final).absolute()
    mine = (final, threading.get_ident())
    if mine in _HELD:
        yield
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        _HELD.add(mine)
        try:
            yield
        finally:
            _HELD.discard(mine)
            fcntl.flock(fh, fcntl.LOCK_UN)


def partial_folder(final: str | Path) -> Path:
    """A fresh temporary folder beside ``final`` to write it in (renamed into place when complete: ``publish``,
    or the caller's ``os.replace``), so a folder a later stage trusts is never half-written. It is signed by its
    writer, ``.<name>.partial-<random>-<pid>@<host>``. The partial folders that writers of the same ``final`` on this
    host left when they died (SIGKILL, a power cut: no clean-up ran; GBs for a paper-size teacher cache) are
    removed first; a live writer's, or one from another host sharing the storage, stays. Unsigned ones (older
    code, which wrote under ``exclusive(final)`` only) are removed too."""
    import socket

    import psutil

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for old in final.parent.glob(f".{final.name}.partial-*"):
        signer = old.name.rsplit(".partial-", 1)[1].partition("-")[2]  # "<pid>@<host>", or "" when unsigned
        pid, _, where = signer.partition("@")
        if not signer or (where == host and pid.isdigit() and not psutil.pid_exists(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    prefix = f".{final.name}.partial-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=f"-{os.getpid()}@{host}", dir=final.parent))


@contextlib.contextmanager
def writing(final: str | Path) -> Iterator[Path]:
    """A partial folder for ``final`` (``partial_folder``), published when the block completes and removed when it
    raises (a full disk, Ctrl-C): nothing half-written is left beside ``final``. The block runs under
    ``exclusive(final)``: a second writer of the same folder waits, then writes it again (callers that can use
    the first writer's result check for it under ``exclusive`` first)."""
    with exclusive(final):
        partial = partial_folder(final)
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        publish(partial, final)


def publish(partial: Path, final: str | Path) -> Path:
    """Move a complete ``partial`` folder to ``final`` (replacing what is there: a stale or half-written copy)."""
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)  # one rename on one file system: readers see all of it or nothing
    return final


def teacher_complete(folder: str | Path) -> bool:
    """A saved model folder a stage may use: its config, its weights and its tokenizer are all there."""
    root = Path(folder)
    weights = any((root / n).is_file() for n in ("model.safetensors", "pytorch_model.bin"))
    return (root / "config.json").is_file() and weights and any(root.glob("tokenizer*"))


def local_store_uri(storage: str | Path) -> str:
    """The study's own SQLite store under ``storage`` (created by nothing here)."""
    return f"sqlite:///{Path(storage).resolve() / 'mlflow' / 'mlflow.db'}"


def local_store(storage: str | Path) -> tuple[str, Path]:
    root = Path(storage).resolve() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def existing_store(storage: str | Path) -> str | None:
    """``MLFLOW_TRACKING_URI``, or the study's own SQLite store under ``storage`` if it exists (never created)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = Path(storage).resolve() / "mlflow" / "mlflow.db"
    return f"sqlite:///{db}" if db.is_file() else None


def server_log(storage: str | Path, study: str | None = None) -> Path:
    """The log of a server a study started: one per study (studies sharing a storage run a server each)."""
    path = Path(storage).resolve() / "mlflow" / (f"server-{study}.log" if study else "server.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def ray_temp_dir(storage: str | Path) -> tuple[str, Path | None, str | None]:
    """Ray's temp folder for a study that starts its own Ray: ``<storage>/ray``.

    Returns (the path to hand Ray, a symlink to remove afterwards or None, a note for the console or None). When
    ``<storage>/ray`` is too long for Ray's socket paths, a short symlink ``/tmp/kdr-<hash>-<pid>`` points at it (the
    files still live under the storage) and the note says so."""
    target = (Path(storage).resolve() / "ray").resolve()
    target.mkdir(parents=True, exist_ok=True)
    # Ray's core worker takes its socket paths as ASCII (a 'ü' in the storage path is a UnicodeEncodeError in
    # ray.init): such a path is reached through the short link too.
    if len(str(target)) + RAY_SESSION_SUFFIX <= SOCKET_PATH_MAX and str(target).isascii():
        return str(target), None, None
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:8]
    # /tmp itself, not TMPDIR: the point is a short path. One link per driver process: two studies sharing a
    # storage start together (a shared name raced on creation, and the first to finish removed the other's link).
    tmp = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    _remove_dead_links(tmp, digest)
    link = tmp / f"kdr-{digest}-{os.getpid()}"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    why = (
        f"too long for Unix sockets ({len(str(target))} characters, at most {SOCKET_PATH_MAX - RAY_SESSION_SUFFIX})"
        if str(target).isascii()
        else "not ASCII, which Ray's sockets need"
    )
    note = f"Ray's temp folder is {target}; its path is {why}, so Ray reaches it through the symlink {link} (removed at the end)"
    return str(link), link, note


def _remove_dead_links(tmp: Path, digest: str) -> None:
    """Links of this storage left by drivers that were killed (their pid no longer runs)."""
    import psutil

    for stale in tmp.glob(f"kdr-{digest}-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if stale.is_symlink() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()


def remove_link(link: Path | None) -> None:
    if link is not None and link.is_symlink():
        link.unlink()
