"""Which storage each study ran with (``studies.json`` under ``KDSTUDY_STATE_DIR``, default
``~/.local/state/kdstudy``), so ``--status``, ``--plan`` and the notebooks command find a study's store without
``--storage``. Written by the study driver (sweep/), read by it and by analysis/; imports nothing of either."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_ENV = "KDSTUDY_STATE_DIR"


def state_dir() -> Path:
    default = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "kdstudy"
    return Path(os.environ.get(STATE_ENV) or default)


def remember_storage(study: str, storage: str | Path) -> None:
    """Record where ``study`` keeps its files, for the notebooks command and ``--status`` without ``--storage``."""
    path = state_dir() / "studies.json"
    try:
        index = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        index = {}
    index[study] = str(Path(storage).resolve())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the commands then need --storage, and say so


def remembered_storage(study: str) -> Path | None:
    path = state_dir() / "studies.json"
    try:
        value = json.loads(path.read_text()).get(study)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return Path(value) if value else None
