"""The hub repositories a study reads, checked against the local Hugging Face cache before anything starts.

``--plan`` lists what is missing with the ``hf download`` command for each (docs/HUB.md); a run stops on it with
one ``error:`` line when the hub cannot be reached (``HF_HUB_OFFLINE=1``, or no answer from the hub), instead of
failing inside a Ray task minutes later. With the hub reachable, a run first downloads the snapshot of each task
dataset the cache has no copy of (``fetch_datasets``: what ``hf download`` would, ``refs/main`` included) before
its plan is built, so the keys name the snapshot's commit from the first run on; teachers are downloaded on first
use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from orchestrator.core.errors import StudyError
from orchestrator.core.log import log

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


def fetch_datasets(spec: Any, download: Callable[..., Any] | None = None) -> list[str]:
    """Download the snapshot of every task dataset ``spec`` reads from the hub whose cached revision is ``none``,
    with ``download`` (default ``huggingface_hub.snapshot_download``, which writes ``refs/main``) and the files the
    documented pre-fetch names (``tasks.hub_assets.dataset_patterns``); one line per download. Without it the plan's
    keys would hold ``none`` and change once a first load cached the data: a resume would find nothing done.
    Returns the ids fetched."""
    from tasks.hub_assets import dataset_patterns, prefetch_command
    from tasks.hub_cache import dataset_revision, describe_hf_home

    if download is None:
        from huggingface_hub import snapshot_download as download
    fetched = []
    for asset in study_assets(spec):
        if asset.kind != "dataset" or dataset_revision(asset.repo_id, asset.config) != "none":
            continue
        config = f" (config {asset.config})" if asset.config else ""
        log(f"downloading dataset {asset.repo_id}{config} for {asset.why} into HF_HOME={describe_hf_home()}")
        try:
            download(repo_id=asset.repo_id, repo_type="dataset", allow_patterns=dataset_patterns(asset))
        except Exception as err:  # noqa: BLE001 - the hub answered the probe but not the download: one line
            raise StudyError(
                f"downloading dataset {asset.repo_id} for {asset.why} failed ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); pre-fetch it by hand: {prefetch_command(asset)}"
            ) from err
        fetched.append(asset.repo_id)
    return fetched


def check_hub_assets(
    spec: Any,
    study_arg: str | None = None,
    download: Callable[..., Any] | None = None,
    reachable: Callable[[], bool] | None = None,
) -> None:
    """Raise one ``StudyError`` when the study needs hub assets the cache lacks and the hub cannot serve them; with
    the hub reachable, fetch the datasets it lacks (``fetch_datasets``) instead. ``study_arg``: the study as the
    user typed it (a path or a profile), named in the advice (default: the study's name)."""
    missing = missing_lines(spec)
    if not missing:
        return
    if not offline() and (reachable or hub_reachable)():
        fetch_datasets(spec, download)
        return
    from tasks.hub_cache import describe_hf_home

    why = "HF_HUB_OFFLINE is set" if offline() else "the hub does not answer"
    names = "; ".join(line.split(" (pre-fetch: ")[0].removeprefix("missing ") for line in missing)
    home = describe_hf_home(None)
    raise StudyError(
        f"{len(missing)} hub asset(s) missing from the Hugging Face cache and {why}: {names}. On a machine with "
        f"internet run `hf download` for each with HF_HOME={home} (`python -m orchestrator.study "
        f"{study_arg or spec.name} --plan` prints the commands; docs/HUB.md), then run the study with "
        f"HF_HOME={home} HF_HUB_OFFLINE=1"
    )
