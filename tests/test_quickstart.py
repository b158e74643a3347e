"""The README's main job (`python -m orchestrator.study quickstart`): its windowed exception data, built under the
storage on first use like the default data; the profile validates and plans within the work measured at <= 10
minutes on 2 CPU cores (docs/benchmarks/quickstart_cpu.json); the README's first study command names it."""

from __future__ import annotations

import json
import shutil

import yaml

from orchestrator.bench.sizes import TRANSFER_SIZES
from orchestrator.bench.transfer_data import HOLE


def test_window_data_is_built_under_the_storage_on_first_use(tmp_path, local_data, monkeypatch):
    from orchestrator.design.data_source import prepare_data, resolve_spec_data, will_build
    from orchestrator.design.study import load_spec

    shutil.copytree(local_data, tmp_path / "data" / "local")  # a user's ./data/local is the source
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    study = {
        "data": "data/local-window",
        "tasks": ["exception"],
        "teachers": [],
        "students": ["roberta-tiny"],
    }
    path.write_text(yaml.safe_dump({**study, "methods": ["ft"]}))
    spec = resolve_spec_data(load_spec(path, {"storage": str(tmp_path / "store")}))
    window = tmp_path / "store" / "data" / "local-window"
    assert spec.data == str(window.resolve()) and will_build(spec)
    prepare_data(spec)
    assert not will_build(spec) and not list(window.parent.glob("*.tmp-*"))
    before, after = TRANSFER_SIZES["cpu"].hole_window  # type: ignore[misc]
    for split in ("train", "validation", "test"):
        rows = [json.loads(x) for x in (window / "exception" / f"{split}.jsonl").read_text().splitlines()]
        src = [json.loads(x) for x in (local_data / "exception" / f"{split}.jsonl").read_text().splitlines()]
        assert [r["label"] for r in rows] == [r["label"] for r in src] and len(rows) > 0
        for cut, whole in zip(rows, src):
            lines, full = cut["function"].split("\n"), whole["function"].split("\n")
            hole = next(i for i, line in enumerate(lines) if HOLE in line)
            assert lines[0] == full[0] and len(lines) <= 1 + before + 1 + after and hole <= before + 1
        assert sum(len(r["function"]) for r in rows) < sum(len(r["function"]) for r in src)
    for task in (
        "defect",
        "clone",
    ):  # unchanged copies: a study naming them on this data reads the local data
        assert (window / task / "train.jsonl").read_bytes() == (
            local_data / task / "train.jsonl"
        ).read_bytes()
    (window / "window.json").write_text(json.dumps({"window": [1, 1]}))  # cut with another window: cut again
    assert will_build(spec)
    (tmp_path / "data" / "local-window").mkdir()  # a user's own ./data/local-window is kept
    assert (
        resolve_spec_data(load_spec(path, {"storage": str(tmp_path / "store")})).data == "data/local-window"
    )
