"""Keys stay stable: a study run before the pipeline was made one (issue 21) resumes under the same trial keys, finds
its teachers and its caches. The pinned values were computed by the code before that change (keyed on hub data and
an absent completion folder, so they do not depend on this machine's files)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from kd_methods import DerivedRequest, SignalSpec, build_method
from orchestrator.cache.key import CacheRequest
from orchestrator.design.study import build_plan, load_spec
from orchestrator.sweep.tuning import final_trial


def _digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def test_classification_trial_teacher_and_cell_keys_are_unchanged():
    full = build_plan(load_spec("full"), calibration=None)
    assert _digest([t.trial_key for t in full.trials]) == "e1a7bc8bcf06bb67"
    assert [t.trial_key for t in full.trials[:3]] == [
        "3fba96faa51958c8",
        "e1715757c482b97b",
        "22f0cc9d5361e1b4",
    ]
    assert [u.key for u in full.teachers] == [
        "4a49228fe5f6329e",
        "1ebddb15dfdb7ad8",
        "238868f1f8225f47",
        "33b114cb0338b62c",
        "9d654ac80c7cb7ec",
        "7e36eb3e769ce517",
    ]
    tune = build_plan(load_spec("smoke-tune", {"data": "hub", "storage": "/tmp/kx"}), calibration=None)
    assert [t.trial_key for t in tune.trials] == [
        "8135474ea351f102",
        "24992feb5ed5b41b",
        "fb8144fffcdbd7a4",
        "dee869cb16458409",
        "beb8c0974c7a3742",
        "1e5f84d40ba36f4b",
        "4ab57579f2dc1e87",
        "787c5124a8925d8e",
        "c7cd1489460e5edc",
        "c5739f10fcb880ed",
    ]
    assert [t.cell for t in tune.cells] == [
        "3812662d0237",
        "c9571d6b972b",
        "0d51db799ab0",
        "62a3ca66697d",
        "54ba7fc009dc",
    ]


def test_a_tuned_final_trial_is_keyed_as_before():
    tune = build_plan(load_spec("smoke-tune", {"data": "hub", "storage": "/tmp/kx"}), calibration=None)
    tags = {"tuned_params": "lr,method.temperature"}
    params = {"lr": "0.0005", "method.temperature": "4.0"}
    best = SimpleNamespace(info=SimpleNamespace(run_id="r0"), data=SimpleNamespace(tags=tags, params=params))
    final = final_trial(tune, next(t for t in tune.trials if t.method == "kd"), best)
    assert final.trial_key == "72c51e9789de61b4"
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
    full = build_plan(load_spec("completion-full"), calibration=None)
    assert _digest([t.trial_key for t in full.trials]) == "f14fd8dedb1bb7d7"
    assert [t.trial_key for t in full.trials[:3]] == [
        "8b1e87f30cb1ef23",
        "fec7828532f0ac66",
        "91534a384556e22a",
    ]
    smoke = build_plan(load_spec("completion-smoke", {"data": "/nonexistent"}), calibration=None)
    assert [t.trial_key for t in smoke.trials] == [
        "dc19aea212ad1ad3",
        "202b37acfc74f303",
        "770480619f08e65f",
        "700a009d90c9a01c",
        "f8ea9ca639f7131f",
        "9d151db73cc4074d",
        "9409c29be1fdccad",
        "67fc6a332cf0fd6c",
        "79aabc7e83466deb",
        "53d09cfe2f8521d1",
    ]
    assert [u.key for u in smoke.teachers] == ["e75d9f2ecd1cbb6a"]
