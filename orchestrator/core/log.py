"""The driver's log line and how loud a study is: quiet consoles (no MLflow run links, no Tune tables, no
transformers progress bars) unless ``--verbose``."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

VERBOSE_ENV = "KDSTUDY_VERBOSE"
QUIET = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # MLflow 3: no "View run ... at" per run
    # Tune's new output engine prints its configuration table and a TensorBoard hint even at verbose=0;
    # the legacy reporter at verbose=0 prints nothing (ray/tune/experimental/output.py)
    "RAY_AIR_NEW_OUTPUT": "0",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Writing model shards" bars
}


def log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def set_verbosity(verbose: bool) -> None:
    """Quiet by default (``QUIET``); ``--verbose`` restores MLflow's links and Tune's tables."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    for key, value in QUIET.items():
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


@contextlib.contextmanager
def tune_log(path: Path) -> Iterator[None]:
    """Ray Tune's own log records (a dead worker's traceback, "Trials did not complete") into ``path``, not the
    console, while the block runs: the study prints one line per failed trial and keeps its reason in MLflow.
    ``--verbose`` leaves them on the console too."""
    if verbose():
        yield
        return
    logger = logging.getLogger("ray.tune")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    before = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # Ray's console handler sits on the "ray" logger above
    try:
        yield
    finally:
        logger.propagate = before
        logger.removeHandler(handler)
        handler.close()
