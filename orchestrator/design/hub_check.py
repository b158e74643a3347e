"""The hub repositories a study reads, checked against the local Hugging Face cache before anything starts.

``--plan`` lists what is missing with the ``hf download`` command for each (docs/HUB.md); a run stops on it with
one ``error:`` line when the hub cannot be reached (``HF_HUB_OFFLINE=1``, or no answer from the hub), instead of
failing inside a Ray task minutes later. With the hub reachable, a run downloads what it lacks on first use.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrator.core.errors import StudyError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def study_assets(spec: Any) -> list[Any]:
    """Every hub dataset and model ``spec`` (either kind) reads: the tasks' datasets for ``data: hub`` and each
    teacher whose source (alias resolved) is a hub id."""
    from orchestrator.train.trial import TEACHER_ALIASES
    from tasks.hub_assets import study_hub_assets

    teachers = [(t.name, TEACHER_ALIASES.get(t.source, t.source)) for t in spec.teachers]
    if spec.kind == "completion":  # its data and line test are a local folder: only the teachers
        return study_hub_assets([], "", teachers)
    return study_hub_assets(spec.tasks, spec.data, teachers)


def missing_lines(spec: Any) -> list[str]:
    """One line per asset the cache (this process's HF_HOME) lacks, with its pre-fetch command; [] when none."""
    from tasks.hub_assets import missing_hub_assets

    assets = study_assets(spec)
    return missing_hub_assets(assets) if assets else []


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the hub answers within ``timeout`` seconds (proxies from the environment apply)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        with urllib.request.urlopen(constants.ENDPOINT, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False


def check_hub_assets(spec: Any) -> None:
    """Raise one ``StudyError`` when the study needs hub assets the cache lacks and the hub cannot serve them."""
    missing = missing_lines(spec)
    if not missing or (not offline() and hub_reachable()):
        return
    from tasks.hub_cache import describe_hf_home

    why = "HF_HUB_OFFLINE is set" if offline() else "the hub does not answer"
    names = "; ".join(line.split(" (pre-fetch: ")[0].removeprefix("missing ") for line in missing)
    home = describe_hf_home(None)
    raise StudyError(
        f"{len(missing)} hub asset(s) missing from the Hugging Face cache and {why}: {names}. On a machine with "
        f"internet run `hf download` for each with HF_HOME={home} (`python -m orchestrator.study "
        f"{spec.name} --plan` prints the commands; docs/HUB.md), then run the study with HF_HOME={home} "
        "HF_HUB_OFFLINE=1"
    )
