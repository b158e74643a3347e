"""Hub stand-ins for the study's datasets: local data written into a Hugging Face cache exactly where, and in the
form, a download of the real hub repositories leaves them, so the project's own ``datasets.load_dataset(<hub id>)``
calls run offline against them (the dress rehearsal of ``data: hub``; models/hub_standin.py does the teachers).

Per dataset (``HUB_DATASETS``: ids, configs, split names, file paths and column types as on the hub; docs/HUB.md
gives the sources), two layouts under ``hf_home``:

* the repository snapshot, ``hub/datasets--<org>--<name>/{blobs,snapshots/<commit>,refs/main}``, as
  ``hf download --repo-type dataset`` writes it: parquet files at the hub's paths and a README whose YAML declares
  the configs and features (what ``datasets`` reads from the hub);
* the prepared Arrow copy in the ``datasets`` cache, ``datasets/<org>___<name>/<config>/0.0.0/<commit>/``, as an
  online ``load_dataset`` leaves it: what an offline ``load_dataset(<hub id>, <config>)`` reads. It is produced
  by the ``datasets`` library's own parquet builder from the snapshot.

Rows come from the local real-code builder (``python -m tasks.build_local``; ``records_from_local``), mapped onto
the hub schemas (a defect row's ``project``/``commit_id``, a clone row's ``id1``/``id2``, CuBERT's ``dev`` split).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.hub_cache import datasets_cache_root, hub_cache_root


@dataclass(frozen=True)
class HubDatasetLayout:
    """Where and how one hub dataset config stores its splits: ``path`` holds ``{split}`` (the parquet file)."""

    hf_id: str
    config: str
    features: tuple[tuple[str, str], ...]  # (column, datasets dtype) in the hub's order
    splits: tuple[str, ...]
    path: str


HUB_DATASETS: dict[str, HubDatasetLayout] = {
    "defect": HubDatasetLayout(
        "google/code_x_glue_cc_defect_detection",
        "default",
        (
            ("id", "int32"),
            ("func", "string"),
            ("target", "bool"),
            ("project", "string"),
            ("commit_id", "string"),
        ),
        ("train", "validation", "test"),
        "data/{split}-00000-of-00001.parquet",
    ),
    "clone": HubDatasetLayout(
        "google/code_x_glue_cc_clone_detection_big_clone_bench",
        "default",
        (
            ("id", "int32"),
            ("id1", "int32"),
            ("id2", "int32"),
            ("func1", "string"),
            ("func2", "string"),
            ("label", "bool"),
        ),
        ("train", "validation", "test"),
        "data/{split}-00000-of-00001.parquet",
    ),
    "exception": HubDatasetLayout(
        "claudios/cubert_ETHPy150Open",
        "exception_datasets",
        (("function", "string"), ("label", "string"), ("info", "string")),
        ("train", "dev", "test"),
        "exception_datasets/{split}-00000-of-00001.parquet",
    ),
    "completion_line": HubDatasetLayout(
        "google/code_x_glue_cc_code_completion_line",
        "python",
        (("id", "int32"), ("input", "string"), ("gt", "string")),
        ("train",),
        "python/{split}-00000-of-00001.parquet",
    ),
}


def write_hub_repo(
    hub_root: Path, repo_id: str, files: Mapping[str, bytes], repo_type: str = "model"
) -> Path:
    """Write ``files`` as a downloaded hub repository: content-addressed ``blobs/``, the snapshot of symlinks to
    them, ``refs/main`` naming it (the commit id is a hash of the files, so the same content gives the same id).
    Returns the snapshot folder."""
    kind = {"model": "models", "dataset": "datasets"}[repo_type]
    repo = Path(hub_root) / f"{kind}--{repo_id.replace('/', '--')}"
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    commit = digest.hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _readme(layout: HubDatasetLayout, counts: Mapping[str, tuple[int, int]]) -> str:
    """The dataset card's YAML header as the hub's parquet conversions write it: features, splits, configs."""
    lines = ["---", "dataset_info:", f"  config_name: {layout.config}", "  features:"]
    for name, dtype in layout.features:
        lines += [f"  - name: {name}", f"    dtype: {dtype}"]
    lines.append("  splits:")
    for split in layout.splits:
        n_bytes, n_rows = counts[split]
        lines += [f"  - name: {split}", f"    num_bytes: {n_bytes}", f"    num_examples: {n_rows}"]
    lines += ["configs:", f"- config_name: {layout.config}", "  data_files:"]
    for split in layout.splits:
        lines += [
            f"  - split: {split}",
            f"    path: {layout.path.format(split=split).replace('00000-of-00001', '*')}",
        ]
    return "\n".join([*lines, "---", f"# Stand-in for {layout.hf_id} (kdstudy hub dress rehearsal)", ""])


def _parquet(layout: HubDatasetLayout, rows: list[dict]) -> tuple[bytes, int]:
    """One split as the hub's parquet file, and its Arrow size in bytes (the card's ``num_bytes``)."""
    import datasets

    features = datasets.Features({name: datasets.Value(dtype) for name, dtype in layout.features})
    columns = {name: [row[name] for row in rows] for name, _ in layout.features}
    table = datasets.Dataset.from_dict(columns, features=features)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.parquet"
        table.to_parquet(str(path))
        return path.read_bytes(), int(table.data.nbytes)


def _prepare_arrow(layout: HubDatasetLayout, snapshot: Path, datasets_root: Path) -> Path:
    """The Arrow copy an online ``load_dataset(hf_id, config)`` prepares, built by the library's parquet builder
    from the snapshot and put where the offline loader looks: ``<org>___<name>/<config>/<version>/<commit>``."""
    from datasets.load import LocalDatasetModuleFactory, get_dataset_builder_class
    from datasets.naming import camelcase_to_snakecase

    org, name = layout.hf_id.split("/")
    dataset_name = camelcase_to_snakecase(name)
    module = LocalDatasetModuleFactory(str(snapshot)).get_module()
    builder_cls = get_dataset_builder_class(module, dataset_name=dataset_name)
    datasets_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=datasets_root) as tmp:
        builder = builder_cls(
            cache_dir=tmp,
            dataset_name=dataset_name,
            config_name=layout.config,
            hash=snapshot.name,
            info=module.dataset_infos.get(layout.config),
            base_path=str(snapshot),
        )
        builder.download_and_prepare()
        built = Path(builder.cache_dir)
        target = datasets_root / f"{org}___{dataset_name}" / layout.config / built.parent.name / snapshot.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(target))
    return target


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """The writer prints no progress bars (``datasets`` draws one per split it converts or prepares)."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def write_hub_dataset(
    hf_home: str | Path,
    layout: HubDatasetLayout,
    rows: Mapping[str, list[dict]],
    *,
    prepared: bool = True,
) -> Path:
    """Write one dataset config into ``hf_home``: the hub snapshot, and (``prepared``) the ``datasets`` cache's
    Arrow copy. ``rows`` maps each of ``layout.splits`` to records with the layout's columns. Returns the
    snapshot folder."""
    missing = [s for s in layout.splits if not rows.get(s)]
    if missing:
        raise ValueError(f"{layout.hf_id}: no rows for split(s) {missing}")
    with _no_progress_bars():
        return _write_hub_dataset(hf_home, layout, rows, prepared)


def _write_hub_dataset(
    hf_home: str | Path, layout: HubDatasetLayout, rows: Mapping[str, list[dict]], prepared: bool
) -> Path:
    parts = {s: _parquet(layout, list(rows[s])) for s in layout.splits}
    files = {layout.path.format(split=s): data for s, (data, _) in parts.items()}
    files["README.md"] = _readme(layout, {s: (parts[s][1], len(rows[s])) for s in layout.splits}).encode()
    snapshot = write_hub_repo(hub_cache_root(hf_home), layout.hf_id, files, "dataset")
    if prepared:
        _prepare_arrow(layout, snapshot, datasets_cache_root(hf_home))
    return snapshot


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def line_rows(local: Path, n: int = 200) -> list[dict]:
    """Line-level completion samples ``{id, input, gt}``: the completion proxy's ``line_test.json`` when the
    folder has one (``--tasks completion``), else cut the same way from its exception functions, preprocessed as
    CodeXGLUE preprocesses py150."""
    if (local / "completion" / "line_test.json").is_file():
        lines = _jsonl(local / "completion" / "line_test.json")
    else:
        from tasks.completion.preprocess import preprocess_file
        from tasks.completion.proxy import ProxySettings, line_samples

        files = [preprocess_file(r["function"]) for r in _jsonl(local / "exception" / "test.jsonl")]
        lines = line_samples([f for f in files if f != "<s> </s>"], ProxySettings(line_samples=n))
    return [{"id": i, "input": r["input"], "gt": r["gt"]} for i, r in enumerate(lines[:n])]


def records_from_local(local_dir: str | Path, names: Iterable[str]) -> dict[str, dict[str, list[dict]]]:
    """Rows in the hub schemas from a ``python -m tasks.build_local`` folder: per stand-in name, per hub split
    name (``completion_line``: ``line_rows``)."""
    local = Path(local_dir)
    out: dict[str, dict[str, list[dict]]] = {}
    for name in names:
        layout = HUB_DATASETS[name]
        if name == "completion_line":
            out[name] = {"train": line_rows(local)}
            continue
        ours = dict(zip(layout.splits, ("train", "validation", "test"), strict=True))
        out[name] = {}
        for hub_split, split in ours.items():
            rows = _jsonl(local / name / f"{split}.jsonl")
            if name == "defect":  # Devign's project and commit: where the function came from
                for row in rows:
                    row["commit_id"] = hashlib.sha1(row["func"].encode()).hexdigest()
            out[name][hub_split] = rows
    return out


def write_hub_datasets(
    hf_home: str | Path, local_dir: str | Path, names: Iterable[str] = ("defect", "clone", "exception")
) -> dict[str, Path]:
    """Every named stand-in (``HUB_DATASETS`` keys) from a local data folder; returns their snapshot folders."""
    names = list(names)
    records = records_from_local(local_dir, names)
    return {name: write_hub_dataset(hf_home, HUB_DATASETS[name], records[name]) for name in names}
