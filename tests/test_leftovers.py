"""What a writer killed with SIGKILL leaves (a resume audit, 2026-12-07): its half-written folder beside a teacher
cache or teacher, GBs at paper size, stayed forever. The next writer of the same folder on this host removes the
partial folders of writers that are gone, and only those (``core.paths.partial_folder``, which every such writer
uses: ``writing``, the teacher caches, the completion teachers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from orchestrator.core.paths import partial_folder


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_the_next_writer_removes_what_dead_writers_left_and_nothing_else(tmp_path: Path) -> None:
    final = tmp_path / "teacher_cache" / "abc123"
    final.parent.mkdir()
    host = socket.gethostname()
    dead = final.parent / f".abc123.partial-deadbeef-{_dead_pid()}@{host}"
    alive = final.parent / f".abc123.partial-cafebabe-{os.getpid()}@{host}"  # a writer still at work
    elsewhere = (
        final.parent / f".abc123.partial-01234567-{_dead_pid()}@another-host"
    )  # a shared storage's node
    unsigned = final.parent / ".abc123.partial-89abcdef"  # older code's, written under exclusive(final) only
    other_key = final.parent / f".zzz999.partial-deadbeef-{_dead_pid()}@{host}"
    for folder in (dead, alive, elsewhere, unsigned, other_key):
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "shard.npy").write_bytes(b"x" * 1000)
    mine = partial_folder(final)
    assert not dead.exists() and not unsigned.exists()
    assert alive.exists() and elsewhere.exists() and other_key.exists()
    assert mine.parent == final.parent and mine.name.startswith(".abc123.partial-") and mine.is_dir()
    assert mine.name.endswith(f"-{os.getpid()}@{host}")
    again = partial_folder(final)
    assert again != mine and mine.exists()  # a live writer's (this process's) folder stays
