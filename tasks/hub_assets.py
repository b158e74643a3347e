"""Which Hugging Face hub datasets and models a study needs, and which of them the local cache lacks: checked on
disk, without network, before anything starts (the plan calls ``missing_hub_assets``; docs/HUB.md tells a
cluster user how to pre-fetch what it lists).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tasks.completion.data import HUB_LINE_TEST as LINE_TEST_DATASET  # CodeXGLUE 2020 line set
from tasks.hub_cache import datasets_cache_dir, describe_hf_home, hub_snapshot, model_missing_files
from tasks.registry import get_task, is_custom

# Weight formats the project never loads: skipped by the suggested downloads (a CodeGPT download is half this).
MODEL_EXCLUDES = ("*.h5", "*.msgpack", "*.onnx", "onnx/*")


@dataclass(frozen=True)
class HubAsset:
    """One hub repository a study reads: ``kind`` ``dataset`` or ``model``, its id, the dataset config it reads
    (None: the default one, or a model), and ``why`` (``task clone``, ``teacher unixcoder``)."""

    kind: str
    repo_id: str
    config: str | None
    why: str


def _looks_like_hub_id(source: str) -> bool:
    # "org/name": a hub id unless a folder of that name exists here; paths and random:/minilm teachers are not.
    return (
        source.count("/") == 1
        and not source.startswith(("/", ".", "~", "random:"))
        and not Path(source).expanduser().exists()
    )


def study_hub_assets(
    tasks: Iterable[str], data: str, teachers: Iterable[tuple[str, str]] = (), line_test: bool = False
) -> list[HubAsset]:
    """The hub repositories a study reads: each built-in task's dataset when ``data`` is ``"hub"``, each teacher
    whose source (after the caller resolved aliases: ``unixcoder`` -> ``microsoft/unixcoder-base``) is a hub id,
    given as ``(name, source)``, and the line-level completion test set when ``line_test``."""
    assets: list[HubAsset] = []
    if str(data) == "hub":
        for task in tasks:
            if not is_custom(task):
                t = get_task(task)
                assets.append(HubAsset("dataset", t.hf_id, t.hf_config, f"task {task}"))
    if line_test:
        assets.append(HubAsset("dataset", *LINE_TEST_DATASET, "completion test set"))
    for name, source in teachers:
        if _looks_like_hub_id(str(source)):
            assets.append(HubAsset("model", str(source), None, f"teacher {name}"))
    unique: dict[tuple[str, str, str | None], HubAsset] = {}
    for asset in assets:
        unique.setdefault((asset.kind, asset.repo_id, asset.config), asset)
    return list(unique.values())


def dataset_patterns(asset: HubAsset) -> list[str] | None:
    """The files of a dataset repository a study reads (``allow_patterns``, ``hf download --include``): for a
    repository of several configs (CuBERT's, the line set's) only the one read and the card naming it; None: all."""
    return None if asset.config in (None, "default") else [f"{asset.config}/*", "README.md"]


def prefetch_command(asset: HubAsset, hf_home: str | Path | None = None) -> str:
    """The command that puts ``asset`` into the cache, to run where the hub is reachable with the same HF_HOME."""
    home = f"HF_HOME={describe_hf_home(hf_home)}"
    if asset.kind == "dataset":
        only = "".join(
            f' --include "{p}"' if "*" in p else f" --include {p}" for p in dataset_patterns(asset) or []
        )
        return f"{home} hf download --repo-type dataset {asset.repo_id}{only}"
    excludes = "".join(f' --exclude "{pattern}"' for pattern in MODEL_EXCLUDES)
    return f"{home} hf download {asset.repo_id}{excludes}"


def missing_hub_assets(assets: Iterable[HubAsset], hf_home: str | Path | None = None) -> list[str]:
    """One line per asset the cache under ``hf_home`` (None: this process's HF_HOME) cannot serve offline, with
    the command that pre-fetches it; ``[]`` when everything is there.

    A dataset is there when the ``datasets`` cache has a prepared copy of its config or the hub cache has a
    snapshot of its repository (``hf download``); a model when its snapshot has a config, weights and a tokenizer.
    """
    lines = []
    for asset in assets:
        if asset.kind == "dataset":
            have = datasets_cache_dir(asset.repo_id, asset.config, hf_home) or hub_snapshot(
                asset.repo_id, "dataset", hf_home
            )
            what = "" if have else "not cached"
        else:
            gaps = model_missing_files(asset.repo_id, hf_home)
            what = "" if not gaps else ("not cached" if gaps == ["snapshot"] else "lacks " + ", ".join(gaps))
        if what:
            config = f" (config {asset.config})" if asset.config else ""
            lines.append(
                f"missing {asset.kind} {asset.repo_id}{config} for {asset.why}: {what} in "
                f"{describe_hf_home(hf_home)} (pre-fetch: {prefetch_command(asset, hf_home)})"
            )
    return lines
