"""What a builder killed with SIGKILL leaves (a resume audit, 2026-12-07): its half-built folder beside a teacher
cache or teacher, GBs at paper size, stayed forever. The next builder of the same folder on this host removes the
folders of builders that are gone, and only those (``core.paths.build_dir``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from orchestrator.core.paths import build_dir


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_the_next_builder_removes_what_dead_builders_left_and_nothing_else(tmp_path: Path) -> None:
    final = tmp_path / "teacher_cache" / "abc123"
    final.parent.mkdir()
    host = socket.gethostname()
    dead = final.parent / f".abc123.tmp-deadbeef-{_dead_pid()}@{host}"
    alive = final.parent / f".abc123.tmp-cafebabe-{os.getpid()}@{host}"  # a builder still at work
    elsewhere = final.parent / f".abc123.tmp-01234567-{_dead_pid()}@another-host"  # a shared storage's node
    older = final.parent / ".abc123.tmp-89abcdef"  # named before builders signed their folders
    other_key = final.parent / f".zzz999.tmp-deadbeef-{_dead_pid()}@{host}"
    for folder in (dead, alive, elsewhere, older, other_key):
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "shard.npy").write_bytes(b"x" * 1000)
    mine = build_dir(final)
    assert not dead.exists()
    assert alive.exists() and elsewhere.exists() and older.exists() and other_key.exists()
    assert mine.parent == final.parent and mine.name.startswith(".abc123.tmp-")
    assert mine.name.endswith(f"-{os.getpid()}@{host}") and not mine.exists()
    assert build_dir(final) != mine  # each call its own folder
