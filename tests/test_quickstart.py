"""The README's main job (`python -m orchestrator.study quickstart`): its windowed exception data, built under the
storage on first use like the default data; the profile validates and plans within the work measured at <= 10
minutes on 2 CPU cores (docs/benchmarks/quickstart_cpu.json); the README's first study command names it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml
from conftest import ROOT

from orchestrator.bench.sizes import TRANSFER_SIZES
from tasks.hole_window import HOLE


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


def _work(profile: str, storage: Path) -> dict[str, int]:
    """What a profile trains, counted from its plan: teacher fine-tune samples (epochs x labelled), teacher-pass
    samples (every split, every input), student optimiser steps (``steps``, or epochs x batches of the inputs each
    reads)."""
    from math import ceil

    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.plan import unit_sizes
    from orchestrator.design.study import build_plan, load_spec

    spec = resolve_spec_data(load_spec(profile, {"storage": str(storage)}))
    plan = build_plan(spec)
    teacher = sum(
        spec.teacher_train_for(u.teacher).epochs * unit_sizes(spec, u)["train"] for u in plan.teachers
    )
    passes = sum(sum(unit_sizes(spec, u).values()) for u in plan.caches)
    steps = 0
    for t in plan.trials:
        train = t.settings["train"]
        # student_train.steps: that many, whatever the inputs; else epochs x batches
        steps += train.get("steps") or train["epochs"] * ceil(
            unit_sizes(spec, t)["train"] / train["batch_size"]
        )
    return {
        "teacher_samples": teacher,
        "pass_samples": passes,
        "student_steps": steps,
        "trials": len(plan.trials),
    }


def test_quickstart_plans_no_more_work_than_was_measured_in_10_minutes(tmp_path):
    """The profile validates and plans offline, and does no more work than the run measured at <= 600 s on 2 CPU
    cores: a profile edit that adds epochs, seeds or methods fails here until it is measured again."""
    measured = json.loads((ROOT / "docs" / "benchmarks" / "quickstart_cpu.json").read_text())
    assert measured["profile"] == "quickstart" and measured["wall_s"] <= 600 and measured["cores"] == 2
    work = _work("quickstart", tmp_path / "store")
    assert all(work[k] <= measured["work"][k] for k in measured["work"]), (work, measured["work"])
    # a real teacher, real training
    assert work["teacher_samples"] > 0 and work["student_steps"] > work["trials"]
    bar = measured["bar"]  # the bar, met by the measured run
    assert bar["teacher_over_baseline"] >= 0.10 and bar["students_above_baseline"] >= 0.90
    assert max(m["mean_delta"] for m in measured["methods"].values()) > 0


def test_the_readmes_first_study_command_is_quickstart_and_smoke_stays_ci():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"python -m orchestrator\.study (\S+)", readme)
    assert first is not None and first.group(1) == "quickstart"
    assert (ROOT / "docs" / "quickstart_figure2.png").is_file() and "docs/quickstart_figure2.png" in readme
    ci = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    assert '"orchestrator.study", "smoke"' in ci  # CI's end-to-end plumbing run stays the fast smoke profile


def test_the_2000_step_variant_is_the_quickstart_but_for_its_steps(tmp_path):
    """docs/benchmarks/quickstart_steps2000.yaml (README, "The main job") must stay the profile with only the
    student steps changed, or its figures stop answering "what do more steps do to the same study"."""
    from orchestrator.design.study import build_plan, load_spec

    profile = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "quickstart.yaml").read_text())
    variant_path = ROOT / "docs" / "benchmarks" / "quickstart_steps2000.yaml"
    variant = yaml.safe_load(variant_path.read_text())
    assert variant["student_train"] == {**profile["student_train"], "steps": 2000}
    differ = {k for k in profile.keys() | variant.keys() if profile.get(k) != variant.get(k)}
    assert differ == {"name", "description", "student_train"}
    plan = build_plan(load_spec(variant_path, {"storage": str(tmp_path / "store")}))
    assert len(plan.trials) == 9 and {t.settings["train"]["steps"] for t in plan.trials} == {2000}
