"""Where a study's files go and how loud it is: everything under ``--storage`` (Ray's temp folder, trial scratch,
the server log, default data) and quiet consoles unless ``--verbose``. (The remembered storage of each study:
``orchestrator/study_index.py``.)

What still lands outside the storage (README "Your own data" / docs/OWN_DATA.md, "Where files go"): Ray's own
``~/.ray`` (its token auth file, when Ray enables token auth), a short symlink ``/tmp/kdr-<hash>`` while a study
whose storage path is too long for Unix sockets runs (removed at the end), and the study index ``studies.json``
(``KDSTUDY_STATE_DIR``, default ``~/.local/state/kdstudy``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

VERBOSE_ENV = "KDSTUDY_VERBOSE"
# Ray puts Unix sockets at <temp>/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store: about 64 characters
# after the temp folder, and a socket path may hold at most 107 (Linux sun_path).
SOCKET_PATH_MAX = 107
RAY_SESSION_SUFFIX = 66


def set_verbosity(verbose: bool) -> None:
    """Quiet by default: no MLflow "View run" links, no Tune tables. ``--verbose`` restores both."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    quiet = {
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # MLflow 3: no "View run ... at" per run
        # Tune's new output engine prints its configuration table and a TensorBoard hint even at verbose=0;
        # the legacy reporter at verbose=0 prints nothing (ray/tune/experimental/output.py)
        "RAY_AIR_NEW_OUTPUT": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Writing model shards" bars
    }
    for key, value in quiet.items():
        if verbose:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if "transformers" in sys.modules and not verbose:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") == "1"


def tune_verbosity() -> int:
    """Ray Tune's ``RunConfig.verbose``: 0 (silent; our own progress lines) unless ``--verbose`` (2: its tables)."""
    return 2 if verbose() else 0


def worker_env() -> dict[str, str]:
    """Variables every Ray worker of the study needs: quietness and the declared tasks (tasks/custom.py)."""
    keys = (
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        VERBOSE_ENV,
        "KDSTUDY_TASKS",
    )
    return {k: os.environ[k] for k in keys if k in os.environ}


# ---------------------------------------------------------------------------------------------------- files


def scratch_dir(storage: str | Path, study: str) -> Path:
    """Where trials write checkpoints before MLflow takes them (emptied as each trial ends)."""
    return Path(storage) / study / "scratch"


def server_log(storage: str | Path) -> Path:
    path = Path(storage).resolve() / "mlflow" / "server.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def ray_temp_dir(storage: str | Path) -> tuple[str, Path | None, str | None]:
    """Ray's temp folder for a study that starts its own Ray: ``<storage>/ray``.

    Returns (the path to hand Ray, a symlink to remove afterwards or None, a note for the console or None). When
    ``<storage>/ray`` is too long for Ray's socket paths, a short symlink ``/tmp/kdr-<hash>`` points at it (the
    files still live under the storage) and the note says so."""
    target = (Path(storage).resolve() / "ray").resolve()
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) + RAY_SESSION_SUFFIX <= SOCKET_PATH_MAX:
        return str(target), None, None
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:8]
    # /tmp itself, not TMPDIR: the point is a short path
    link = (Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())) / f"kdr-{digest}"
    if link.is_symlink() and os.readlink(link) != str(target):
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(target, target_is_directory=True)
    note = (
        f"Ray's temp folder is {target}; its path is too long for Unix sockets ({len(str(target))} characters, "
        f"at most {SOCKET_PATH_MAX - RAY_SESSION_SUFFIX}), so Ray reaches it through the symlink {link} "
        "(removed at the end)"
    )
    return str(link), link, note


def remove_link(link: Path | None) -> None:
    if link is not None and link.is_symlink():
        link.unlink()
