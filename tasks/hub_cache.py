"""What the local Hugging Face cache holds, read from disk without any network call.

Two caches matter for a dataset, one for a model (all under HF_HOME unless HF_DATASETS_CACHE / HF_HUB_CACHE move
them):

* ``datasets`` cache, ``<HF_HOME>/datasets/<org>___<name>/<config>/<version>/<hash>/``: the Arrow files an online
  ``datasets.load_dataset(id, config)`` prepared. Offline, ``datasets`` 5 resolves a hub id from here only.
* hub cache, ``<HF_HOME>/hub/datasets--<org>--<name>/snapshots/<commit>/`` (``refs/main`` names the commit): the
  repository's own files, what ``hf download --repo-type dataset <id>`` writes. ``tasks.hub_access`` falls back to
  loading such a snapshot folder when the ``datasets`` cache has no copy.
* models: ``<HF_HOME>/hub/models--<org>--<name>/snapshots/<commit>/`` with ``config.json``, the weights and the
  tokenizer files; ``from_pretrained(id)`` reads it offline (``hf download <id>``).

``hf_home`` arguments name another cache root (e.g. the one a cluster job will use); None means the roots the
libraries in this process use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def datasets_cache_root(hf_home: str | Path | None = None) -> Path:
    """Where ``datasets`` keeps prepared copies, by the rule of ``datasets.config.HF_DATASETS_CACHE``, written out
    here so that a plan of a hub study needs no ``datasets`` import (the GPU machine has none)."""
    if hf_home is not None:
        return Path(hf_home) / "datasets"
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(os.path.expanduser(os.environ.get("HF_HOME", os.path.join(xdg, "huggingface")))) / "datasets"


def hub_cache_root(hf_home: str | Path | None = None) -> Path:
    if hf_home is not None:
        return Path(hf_home) / "hub"
    import huggingface_hub.constants

    return Path(huggingface_hub.constants.HF_HUB_CACHE)


# datasets.naming.camelcase_to_snakecase: the folder name datasets gives a dataset in its cache
_UPPER_UPPER = re.compile(r"([A-Z]+)([A-Z][a-z])")
_LOWER_UPPER = re.compile(r"([a-z\d])([A-Z])")


def _snake(name: str) -> str:
    return _LOWER_UPPER.sub(r"\1_\2", _UPPER_UPPER.sub(r"\1_\2", name)).lower()


def datasets_cache_dir(hf_id: str, hf_config: str | None, hf_home: str | Path | None = None) -> Path | None:
    """The newest prepared copy of ``hf_id`` (config ``hf_config``, else ``default``) in the ``datasets`` cache,
    where an offline ``load_dataset(hf_id, hf_config)`` finds it; None when there is none."""
    org, _, name = hf_id.rpartition("/")
    folder = f"{org}___{_snake(name)}" if org else _snake(name)
    root = datasets_cache_root(hf_home) / folder / (hf_config or "default")
    found = [p for p in root.glob("*/*") if p.is_dir() and (p / "dataset_info.json").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def hub_snapshot(repo_id: str, repo_type: str = "model", hf_home: str | Path | None = None) -> Path | None:
    """The snapshot folder ``refs/main`` points at in the hub cache (``hf download`` / ``from_pretrained``
    wrote it), or None."""
    kind = {"model": "models", "dataset": "datasets"}[repo_type]
    repo = hub_cache_root(hf_home) / f"{kind}--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    snapshot = repo / "snapshots" / ref.read_text().strip()
    return snapshot if snapshot.is_dir() else None


def dataset_revision(hf_id: str, hf_config: str | None, hf_home: str | Path | None = None) -> str:
    """Which copy of the dataset the cache holds: the downloaded snapshot's commit first (``hub:<commit>``,
    ``hf download`` or a study's own fetch wrote ``refs/main``), else the prepared copy's hash (``datasets:<hash>``),
    ``none`` if neither.

    Part of a data request's key (tasks/data_key.py) and of a study's data key (orchestrator/design/identity.py,
    which calls this): a newer download changes it, so what was derived from the old copy (a tokenizer, a trial)
    is not reused for the new one. The snapshot comes first because it is stable: the Arrow copy a first load
    prepares beside it must not change a key computed before that load.
    """
    snapshot = hub_snapshot(hf_id, "dataset", hf_home)
    if snapshot is not None:
        return f"hub:{snapshot.name}"
    prepared = datasets_cache_dir(hf_id, hf_config, hf_home)
    return f"datasets:{prepared.name}" if prepared is not None else "none"


def model_missing_files(repo_id: str, hf_home: str | Path | None = None) -> list[str]:
    """What ``from_pretrained(repo_id)`` would lack offline: ``[]`` when the snapshot has a config, weights and a
    tokenizer; else the missing kinds (``snapshot``, ``config.json``, ``weights``, ``tokenizer``)."""
    snapshot = hub_snapshot(repo_id, "model", hf_home)
    if snapshot is None:
        return ["snapshot"]
    missing = []
    if not (snapshot / "config.json").is_file():
        missing.append("config.json")
    if not any((snapshot / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights")
    if not any((snapshot / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer")
    return missing


def describe_hf_home(hf_home: str | Path | None = None) -> str:
    """The cache root to print in advice: the given one, else HF_HOME (or its default)."""
    if hf_home is not None:
        return str(hf_home)
    return os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
