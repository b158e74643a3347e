"""Keys stay stable: a study run before the pipeline was made one (issue 21) resumes under the same trial keys, finds
its teachers and its caches. The pinned values were computed by the code before that change (keyed on hub data and
an absent completion folder, so they do not depend on this machine's files).

Issue 22 changed the keys of ``data: hub`` studies on purpose: their data identity now holds the study's data seed
(clone's 10% sample, which the trial seed used to pick) and each dataset's cached revision; the hub keys below are
pinned with an empty Hugging Face cache (revision ``none``). Local-data studies keep their keys
(``test_a_local_study_keeps_its_data_key_and_a_hub_one_holds_the_data_seed``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from kd_methods import DerivedRequest, SignalSpec, build_method
from orchestrator.cache.key import CacheRequest
from orchestrator.design.study import build_plan, load_spec
from orchestrator.sweep.tuning import final_trial

SPLITS = ("train", "validation", "test")


def _digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The libraries' cache roots on an empty folder: a hub study's keys as on a machine with nothing fetched."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_classification_trial_teacher_and_cell_keys_are_unchanged(empty_hf_cache: None):
    full = build_plan(load_spec("full"), calibration=None)
    # Changed on purpose 2026-12-07: BiGRU trials hold student_layout (the authors' BiGRU, models/spec.py), so a
    # study resumed after it retrains them; RoBERTa trials keep their keys (the three below). Before: 60cec50ff5d513da
    assert _digest([t.trial_key for t in full.trials]) == "dc5ec040a2646bbe"
    bigru = [t for t in full.trials if t.student.startswith("bigru")]
    assert len(bigru) == 3 * 5 * 2 * 3 * 3 - 3 * 3 * 3 * 1 and all(
        "student_layout" in t.settings for t in bigru
    )
    assert [t.trial_key for t in full.trials[:3]] == [
        "e6039ce1fb3869db",
        "01299bd3dc6801e3",
        "4ed2d51d8b25c8bb",
    ]
    assert [u.key for u in full.teachers] == [
        "5ea908c6165a2ff5",
        "3beee76265500e84",
        "4c885d35e04824a8",
        "a5848d04e4f81f55",
        "0df830975a3ab158",
        "099e72b679e34710",
    ]
    tune = build_plan(load_spec("smoke-tune", {"data": "hub", "storage": "/tmp/kx"}), calibration=None)
    assert [t.trial_key for t in tune.trials] == [
        "ea8560a48f4ada7a",
        "f15812b7edb492c8",
        "8a99d3ee0b3ec06d",
        "5fdddef8c843e22b",
        "ad265ca283a5455c",
        "e46fc9febfb854ea",
        "b0c89c6a0e087b08",
        "a89fa20f82e72cfe",
        "82ab96ca140a698a",
        "f0ca719b914b7810",
    ]
    # Changed on purpose 2026-12-07: a cell's id holds its method's resolved search space (defaults included) and
    # the tuning trials' seed (no longer a final seed), so every tuned study searches again once; before:
    # 45608df7bc90, 96e31ac3f87d, 48e776d5d8d0, 9e945e16691c, 60355232951e
    # and again (DIST's cell only): DIST's default space holds the authors' T 10 since the 2026-12-07 loss audit;
    # before: 6f5c2416c60d
    assert [t.cell for t in tune.cells] == [
        "260e3b1aac58",
        "aaf666a5d14d",
        "94a1456d837b",
        "117d37d17907",
        "b4820c9c9f74",
    ]


def test_a_local_study_keeps_its_data_key_and_a_hub_one_holds_the_data_seed(
    local_data: Path, empty_hf_cache: None
) -> None:
    from orchestrator.core.paths import stable_key
    from orchestrator.design.identity import data_key, file_sha256

    tasks = ["clone", "defect"]
    local = [
        load_spec("smoke", {"data": str(local_data), "tasks": tasks, "seeds": s}) for s in ([0, 1], [1, 2])
    ]
    # the payload as it was before data seeds existed: the files' hashes and the cap, nothing else
    before = {
        "data": {f"{t}/{s}": file_sha256(local_data / t / f"{s}.jsonl") for t in tasks for s in SPLITS},
        "max_samples": local[0].max_samples,
    }
    assert local[0].data_seed == 0 and local[1].data_seed == 1
    assert data_key(local[0]) == data_key(local[1]) == stable_key(before)
    hub = [load_spec("smoke", {"data": "hub", "tasks": tasks, "data_seed": s}) for s in (0, 0, 3)]
    assert data_key(hub[0]) == data_key(hub[1]) != data_key(hub[2])
    trial = build_plan(hub[2], calibration=None).trials[0]
    assert trial.work.data_seed == 3 and json.loads(json.dumps(trial.params))["data_seed"] == 3


def test_a_tuned_final_trial_is_keyed_as_before(empty_hf_cache: None):
    tune = build_plan(load_spec("smoke-tune", {"data": "hub", "storage": "/tmp/kx"}), calibration=None)
    tags = {"tuned_params": "lr,method.temperature"}
    params = {"lr": "0.0005", "method.temperature": "4.0"}
    best = SimpleNamespace(info=SimpleNamespace(run_id="r0"), data=SimpleNamespace(tags=tags, params=params))
    final = final_trial(tune, next(t for t in tune.trials if t.method == "kd"), best)
    assert (
        final.trial_key == "4a1f229b207970b4"
    )  # its cell's id changed on purpose 2026-12-07 (was 0194006733600deb)
    assert final.work.train.lr == 0.0005 and final.work.method_params["temperature"] == 4.0
    assert final.params["lr"] == 0.0005 and final.tags["tuned_from"] == "r0"


def test_cache_keys_are_unchanged_and_ckd_asks_for_its_gram_numbers_itself():
    ckd = DerivedRequest("ckd", ((0, 1, 2),), (("window", 10),))
    assert CacheRequest("t", "defect", SignalSpec(logits=True), 64, "float16", (ckd,)).key("tf", "df") == (
        "649e97823c5ce396aafbacca"
    )
    plain = CacheRequest("t", "defect", SignalSpec(logits=True, cls_layers=(1,)), 64)
    assert plain.key("tf", "df") == "9abccf1ce85bd7594904bc76"
    bf16 = CacheRequest("t", "defect", SignalSpec(logits=True), 64, precision="bf16")
    assert bf16.key("tf", "df") == "cdeca499f35a22df05930518"
    from kd_methods import ModelShape

    _, derived = build_method("ckd", ModelShape(2, 32), ModelShape(4, 64)).cache_needs()
    assert derived == DerivedRequest("ckd", ((0, 2, 4),), (("window", 10),))


def test_completion_trial_and_teacher_keys_are_unchanged():
    # Changed on purpose 2026-12-07: a completion teacher's key carries TOKEN_RULES (CodeXGLUE's specials absorb
    # the spaces beside them, as run_lm.py's tokenizer does), so teachers, caches and trials made with the old
    # tokenization are not reused; without that entry these are the keys before (f14fd8dedb1bb7d7, e75d9f2ecd1cbb6a).
    full = build_plan(load_spec("completion-full"), calibration=None)
    assert _digest([t.trial_key for t in full.trials]) == "c238acf856b0e324"
    assert [t.trial_key for t in full.trials[:3]] == [
        "d998538981bca0a7",
        "0640a78dead51a39",
        "5a32038eed6b3c45",
    ]
    smoke = build_plan(load_spec("completion-smoke", {"data": "/nonexistent"}), calibration=None)
    assert [t.trial_key for t in smoke.trials] == [
        "7188a51974351f2d",
        "d8a02023860a592e",
        "4c8a47f9b075e3f4",
        "efee11a00250a138",
        "1a30b6c51d7c2cd0",
        "9364e884c8051136",
        "000ac5321a2fa00d",
        "289795b240c132ba",
        "2f9fb63ce18e5f86",
        "9895129ca4a6d0cd",
    ]
    assert [u.key for u in smoke.teachers] == ["ebaa869e46f93122"]


def test_ray_temp_link_is_per_driver_and_clears_links_of_dead_drivers(tmp_path):
    """Two studies sharing a long storage path start together: each driver gets its own /tmp link (a shared one
    raced on creation, and the first study to finish removed the other's). A link left by a killed driver goes."""
    import subprocess

    from orchestrator.core.paths import ray_temp_dir, remove_link

    storage = tmp_path / ("s" * 90)  # too long for Ray's sockets
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    digest_path, link, note = ray_temp_dir(storage)
    assert link is not None and note and link.name.endswith(f"-{os.getpid()}")
    stale = link.with_name(link.name.rsplit("-", 1)[0] + f"-{dead.pid}")
    stale.symlink_to(storage / "ray", target_is_directory=True)
    try:
        again, link2, _ = ray_temp_dir(storage)
        assert link2 == link and link.is_symlink() and os.readlink(link) == str((storage / "ray").resolve())
        assert not stale.is_symlink()
    finally:
        remove_link(link)
        if stale.is_symlink():
            stale.unlink()
    assert not link.is_symlink()
