"""Reaching the Hugging Face hub's datasets: offline detection, a quick reachability probe, and the one
``datasets.load_dataset`` call every built-in task loads through (``Task.load_hub`` in tasks/base.py).

Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, or the hub unreachable) ``datasets`` 5 resolves a hub id only
from its own cache of prepared Arrow files (``$HF_HOME/datasets/<org>___<name>/<config>/<version>/<hash>``,
written by an earlier online ``load_dataset``). When that has no copy but the hub cache holds the repository's
files (``hf download --repo-type dataset <id>``, tasks/hub_cache.py), the snapshot folder is loaded instead: the
same files, read by the same parquet builder. Without either it fails at once, as ``HubUnavailableError``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.hub_cache import describe_hf_home, hub_snapshot

if TYPE_CHECKING:
    import datasets

LOCAL_BUILD_HINT = "python -m tasks.build_local --out DIR"
# Where the hub's split names differ from ours (CuBERT's exception set calls validation "dev").
HF_SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid"),
    "test": ("test",),
}


class HubUnavailableError(RuntimeError):
    """The task's Hugging Face dataset cannot be loaded here (offline without a cached copy, or no network)."""

    user_error = True  # the user's to fix: printed as one ``error:`` line (orchestrator/core/errors.py)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline_requested() -> bool:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE read now (the libraries read them once, at import)."""
    return (
        _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (or the HTTPS proxy, when one is set) opens in ``timeout_s``.

    Run in a daemon thread because name resolution ignores socket timeouts and can hang far longer; without
    this check `datasets` retries unreachable hosts for about half a minute before failing.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    # Behind a proxy the hub is reached through it, so the proxy is what has to answer.
    proxy = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    parsed = urllib.parse.urlparse(proxy or endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    return bool(result and result[0])


@contextlib.contextmanager
def forced_offline(active: bool) -> Iterator[None]:
    """Switch `datasets` and `huggingface_hub` to offline mode for one call.

    Both read HF_HUB_OFFLINE into module constants at import, so setting the variable later (or finding the
    network down) has no effect unless the constants are set too; they are restored afterwards.
    """
    if not active:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def unavailable(task: str, hf_id: str, hf_config: str | None, offline: bool, exc: BaseException) -> str:
    """The one-line message of a hub dataset that cannot be loaded, naming it and what to do."""
    config = f" (config '{hf_config}')" if hf_config else ""
    why = (
        "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
        if hub_offline_requested()
        else ("the Hugging Face hub cannot be reached" if offline else "loading it failed")
    )
    return (
        f"task '{task}': Hugging Face dataset '{hf_id}'{config} is not available: {why} and no "
        f"usable cached copy was found ({type(exc).__name__}: {exc}). To make it available: run once with "
        f"network access so it is cached (cache: HF_HOME={describe_hf_home()}; see docs/HUB.md), or set HF_HOME to a "
        f"cache that already has it, or use local JSON Lines instead: `{LOCAL_BUILD_HINT}` and load with "
        f"source=DIR."
    )


def load_hub_dataset(
    task: str, hf_id: str, hf_config: str | None, cache_dir: str | Path | None = None
) -> datasets.DatasetDict:
    """``datasets.load_dataset(hf_id, hf_config)``, offline at once when the hub is off or unreachable;
    HubUnavailableError (one line) when no copy can be had."""
    import datasets

    offline = hub_offline_requested() or not hub_reachable()
    where = str(cache_dir) if cache_dir is not None else None
    # Online, the commit of the downloaded snapshot (the one the study's keys name: tasks/hub_cache.dataset_revision),
    # not whatever main is now; offline, the cache as it is.
    snapshot = None if offline else hub_snapshot(hf_id, "dataset")
    pinned = {"revision": snapshot.name} if snapshot is not None else {}
    try:
        with forced_offline(offline):
            return datasets.load_dataset(hf_id, hf_config, cache_dir=where, **pinned)
    except Exception as exc:  # the library raises many types here (connection, not found, cache misses)
        snapshot = hub_snapshot(hf_id, "dataset") if offline else None
        if snapshot is None:
            raise HubUnavailableError(unavailable(task, hf_id, hf_config, offline, exc)) from exc
    try:  # the repository's files from `hf download`, read as the hub's own parquet configs
        with forced_offline(True):
            return load_snapshot(snapshot, hf_config, where)
    except Exception as exc:
        raise HubUnavailableError(unavailable(task, hf_id, hf_config, offline, exc)) from exc


# A data file's builder in ``datasets`` by its extension (the formats hub datasets are stored in).
_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def card_data_files(snapshot: Path, hf_config: str | None) -> dict[str, list[str]] | None:
    """``{split: [file pattern, ...]}`` of config ``hf_config`` (None: ``default``) as the snapshot's dataset card
    (README.md's YAML ``configs:``) declares it, the card's split names kept (CuBERT's ``dev``); None when the card
    does not declare that config's files."""
    import yaml

    readme = Path(snapshot) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if not text.startswith("---"):
        return None
    try:
        card = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    configs = card.get("configs") if isinstance(card, dict) else None
    entry = next(
        (
            c
            for c in configs or []
            if isinstance(c, dict) and c.get("config_name") == (hf_config or "default")
        ),
        None,
    )
    files = entry.get("data_files") if entry else None
    if isinstance(files, (str, list)) and not (
        isinstance(files, list) and files and isinstance(files[0], dict)
    ):
        return {"train": [files] if isinstance(files, str) else [str(f) for f in files]}
    if not isinstance(files, list):
        return None
    out: dict[str, list[str]] = {}
    for item in files:
        paths = item.get("path") if isinstance(item, dict) else None
        if paths is None or item.get("split") is None:
            return None
        out.setdefault(str(item["split"]), []).extend([paths] if isinstance(paths, str) else map(str, paths))
    return out or None


def load_snapshot(
    snapshot: Path, hf_config: str | None, cache_dir: str | None = None
) -> datasets.DatasetDict:
    """A downloaded snapshot's config ``hf_config``, loaded from the files its card lists for that config.

    Not ``load_dataset(<snapshot>, hf_config)``: for a local folder ``datasets`` first resolves the files of the
    card's *first* config, whichever is asked for, and fails when ``hf download --include "<config>/*"`` left them
    out (the line-completion card lists ``java`` before ``python``). Nor ``data_dir``: the default split patterns
    would rename a ``dev`` split to ``validation``. A card that does not declare the config is loaded as before."""
    import datasets

    files = card_data_files(snapshot, hf_config)
    if files is None:
        return datasets.load_dataset(str(snapshot), hf_config, cache_dir=cache_dir)
    found = {
        split: sorted(str(p) for pat in pats for p in Path(snapshot).glob(pat))
        for split, pats in files.items()
    }
    empty = [split for split, paths in found.items() if not paths]
    if empty:
        raise FileNotFoundError(
            f"{snapshot}: no files for split(s) {empty} of config '{hf_config or 'default'}' "
            f"(card: {files}); download them again without --include filters"
        )
    suffixes = {Path(p).suffix for paths in found.values() for p in paths}
    builder = _BUILDERS.get(next(iter(suffixes))) if len(suffixes) == 1 else None
    if builder is None:
        return datasets.load_dataset(str(snapshot), hf_config, data_files=files, cache_dir=cache_dir)
    return datasets.load_dataset(builder, data_files=found, cache_dir=cache_dir)


def hub_split(ds: datasets.DatasetDict, split: str, task: str, hf_id: str) -> str:
    """The hub's name for our ``split`` in ``ds`` (CuBERT says ``dev`` for validation); ValueError if none."""
    found = next((s for s in HF_SPLIT_NAMES[split] if s in ds), None)
    if found is None:
        raise ValueError(
            f"task '{task}': dataset '{hf_id}' has no split for '{split}' (looked for "
            f"{list(HF_SPLIT_NAMES[split])}; it has {sorted(ds)})"
        )
    return found
