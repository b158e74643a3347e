"""The knowledge-transfer check (``python -m orchestrator.bench transfer``): its statistics by hand, and the whole
check end to end at the tiny size on the real pretrained MiniLM teacher."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from orchestrator.bench.transfer import SIZES, paired_stats


def test_paired_stats_by_hand() -> None:
    ft = [0.50, 0.60, 0.55]
    kd = [0.56, 0.62, 0.60]  # differences 0.06, 0.02, 0.05: mean 13/300, sd sqrt(0.00043333)
    out = paired_stats(kd, ft)
    assert out["mean_delta"] == pytest.approx(0.13 / 3)
    sd = math.sqrt(((0.06 - 0.13 / 3) ** 2 + (0.02 - 0.13 / 3) ** 2 + (0.05 - 0.13 / 3) ** 2) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)  # t(0.975, 2) = 4.303
    assert out["ci95"] == pytest.approx([0.13 / 3 - half, 0.13 / 3 + half])
    assert out["p_value"] == pytest.approx(stats.ttest_rel(kd, ft).pvalue)
    assert 0 < out["p_value"] < 0.1


def test_paired_stats_identical_and_single_seed() -> None:
    same = paired_stats([0.5, 0.6], [0.5, 0.6])
    assert same["mean_delta"] == 0 and same["p_value"] == 1.0 and same["ci95"] == [0.0, 0.0]
    one = paired_stats([0.7], [0.5])
    assert one["mean_delta"] == pytest.approx(0.2) and math.isnan(one["p_value"])


def test_every_size_gives_each_method_the_same_search_budget() -> None:
    for name, size in SIZES.items():
        budgets = {method: len(c) for method, c in size.candidates.items()}
        assert set(budgets) == {"ft", "kd", "dist", "pkd", "ckd"}, name
        assert len(set(budgets.values())) == 1, f"{name}: unequal search budgets {budgets}"
        assert all("lr" in c for cands in size.candidates.values() for c in cands), name


def _bench(*args: str, threads: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    # one torch thread: tiny models on 2 shared, busy cores run several times faster than with two
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "orchestrator.bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_transfer_check_end_to_end_tiny(tmp_path, local_data, tiny_teacher) -> None:
    """Every arm, the placebo and the verdict at the tiny size; the teacher is a tiny random RoBERTa (the check's
    machinery, in seconds; the real MiniLM runs in the cpu and gpu sizes)."""
    out = tmp_path / "transfer.json"
    work = tmp_path / "work"
    args = ("--size", "tiny", "--data", str(local_data), "--out", str(out), "--work", str(work))
    proc = _bench("transfer", *args, "--teacher", str(tiny_teacher))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    size = SIZES["tiny"]
    assert r["task"] == "exception" and r["seeds"] == [0, 1] and r["labelled"] == {"count": 24}
    assert r["data"] == {"source": str(local_data), "train_inputs": 64, "labelled": 24}
    assert set(r["teacher"]) >= {"name", "score", "val_score", "advantage_over_ft_val"}
    assert r["teacher"]["name"] == str(tiny_teacher) and r["teacher"]["trained_on"] == 24
    # the teacher was fine-tuned on the labelled part only: 24 training records in its data copy
    labelled = work / "teacher-count=24-data" / "exception" / "train.jsonl"
    assert len(labelled.read_text().splitlines()) == 24
    assert r["teacher"]["advantage_over_ft_val"] == pytest.approx(
        r["teacher"]["val_score"] - r["ft"]["val_score"]
    )
    assert 0 <= r["teacher"]["score"] <= 1 and 0 <= r["majority_baseline"] <= 1
    assert len(r["ft"]["scores"]) == 2 and r["ft"]["params"] == {"lr": 1e-3}
    for arm in (r, r["same_labels"]):
        assert set(arm["methods"]) == {"kd", "dist", "pkd", "ckd"}
        for name, m in arm["methods"].items():
            assert set(m) >= {"mean_delta", "ci95", "p_value", "scores", "params"}, name
            assert len(m["scores"]) == 2 and len(m["ci95"]) == 2 and m["params"] == size.candidates[name][0]
            assert m["degenerate_seeds"] == sum(x <= r["majority_baseline"] + 0.005 for x in m["scores"])
            deltas = [a - b for a, b in zip(m["scores"], r["ft"]["scores"])]
            assert m["mean_delta"] == pytest.approx(sum(deltas) / 2)
    assert r["same_labels"]["ft"]["scores"] == r["ft"]["scores"]  # FT is shared by the arms
    for name, p in r["placebo"]["methods"].items():
        assert p["params"] == r["methods"][name]["params"] and len(p["scores"]) == 2
        assert p["mean_delta"] == pytest.approx(
            sum(a - b for a, b in zip(p["scores"], r["ft"]["scores"])) / 2
        )
    # the verdict's sub-conditions, recomputed from the numbers it reports
    v = r["verdict"]
    fam = [
        sum(r["methods"][m]["scores"][s] - r["ft"]["scores"][s] for m in r["methods"]) / 4 for s in range(2)
    ]
    assert r["kd_family"]["per_seed"] == pytest.approx(fam)
    assert v["teacher_advantage_ok"] == (r["teacher"]["advantage_over_ft_val"] >= 0.10)
    assert v["every_method_gains"] == all(m["mean_delta"] > 0 for m in r["methods"].values())
    assert v["kd_family_ci_above_zero"] == (r["kd_family"]["ci95"][0] > 0)
    for name, ok in v["placebo_loses_half"].items():
        gain = r["methods"][name]["mean_delta"]
        assert ok == (gain > 0 and r["placebo"]["methods"][name]["mean_delta"] <= gain / 2)
    keys = (
        "teacher_advantage_ok",
        "every_method_gains",
        "kd_family_ci_above_zero",
        "placebo_loses_half_of_every_gain",
    )
    assert v["passed"] == all(v[k] for k in keys)
    assert "passed:" in proc.stdout and "placebo" in proc.stdout


def test_bench_user_errors_are_one_line_with_exit_status_2(tmp_path, local_data) -> None:
    """Issue 24: a missing data folder, an unknown size, an unwritable --out, too little data: one line, exit 2,
    before any work."""
    out = str(tmp_path / "t.json")
    cases = [
        (("transfer", "--data", str(tmp_path / "nowhere"), "--out", out), "no exception data there"),
        (("transfer", "--size", "huge", "--out", out), "invalid choice: 'huge'"),
        (("transfer", "--data", str(local_data), "--out", str(tmp_path / "no" / "t.json")), "does not exist"),
        (("transfer", "--data", str(local_data), "--out", str(tmp_path)), "is a folder"),
        (("overhead", "--data", str(tmp_path / "nowhere"), "--out", out), "no such folder"),
        (
            ("transfer-design", "--labelled", "ten", "--data", str(local_data), "--out", out),
            "--labelled expects",
        ),
        (("transfer", "--size", "cpu", "--data", str(local_data), "--out", out), "needs at least 5000"),
    ]
    for args, message in cases:
        proc = _bench(*args, timeout=300)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, proc.stderr)
        assert not Path(out).exists()


def test_placebo_and_subset_read_the_cache_through_their_maps(tiny_teacher, local_data, tmp_path) -> None:
    """Every signal of a cached row moves with it (logits, [CLS] and token states, token mask, CKD's Gram numbers);
    the placebo's map is a seeded permutation without fixed points."""
    import numpy as np
    import torch

    from kd_methods import DerivedRequest, SignalSpec
    from orchestrator.bench.remap import RemappedTeacher, placebo_permutation
    from orchestrator.cache.build import get_or_build
    from orchestrator.cache.key import CacheRequest
    from orchestrator.cache.serve import CachedTeacher
    from orchestrator.train.prefetch import prefetchable
    from tasks import load_task_data

    data = load_task_data("exception", local_data, max_samples=40)
    spec = SignalSpec(logits=True, cls_layers=(1, 2), token_layers=(0, 2))
    ckd = DerivedRequest("ckd", ((0, 1, 2),), (("window", 10),))
    req = CacheRequest(str(tiny_teacher), "exception", spec, 64, derived=(ckd,), shard_samples=16)
    path = get_or_build(req, data, 20, tmp_path, use_ray=False).path
    perm = placebo_permutation(40, 0)
    assert sorted(perm.tolist()) == list(range(40)) and not np.any(perm == np.arange(40))
    assert np.array_equal(perm, placebo_permutation(40, 0)) and not np.array_equal(
        perm, placebo_permutation(40, 1)
    )
    assert not np.any(placebo_permutation(2, 0) == np.arange(2))
    idx = torch.tensor([3, 0, 17, 39])
    for inner in (CachedTeacher.open(path), CachedTeacher.open(path, reads=ckd)):
        placebo = RemappedTeacher(inner, {"train": perm})
        assert prefetchable(placebo)
        got, want = placebo.fetch("train", idx, spec), inner.fetch("train", perm[idx.numpy()], spec)
        assert len(got.tensors()) == len(want.tensors()) >= 4
        assert all(torch.equal(a, b) for a, b in zip(got.tensors(), want.tensors()))
        assert not torch.equal(got.logits, inner.fetch("train", idx, spec).logits)
        # over the whole split: every row served exactly once (the teacher's output distribution is kept), yet
        # (nearly) no sample gets a row equal to its own (the per-sample knowledge is gone)
        every = torch.arange(40)
        served, own = placebo.fetch("train", every, spec).logits, inner.fetch("train", every, spec).logits
        assert sorted(map(tuple, served.tolist())) == sorted(map(tuple, own.tolist()))
        assert (served != own).any(-1).float().mean() > 0.9
        # other splits are not mapped (the cache keeps their logits only); the device side is the cache's own
        if inner.reads is None:
            logits = SignalSpec(logits=True)
            assert torch.equal(
                placebo.signals("test", idx, logits).logits, inner.signals("test", idx, logits).logits
            )
        assert set(placebo.finish(got).extras) == set(inner.finish(want).extras)
        subset = RemappedTeacher(inner, {"train": np.array([5, 9])})
        assert torch.equal(
            subset.fetch("train", [1, 0], spec).logits, inner.fetch("train", [9, 5], spec).logits
        )
        with pytest.raises(IndexError, match="outside the mapped train split"):
            subset.fetch("train", [2], spec)
        placebo.check_data(data.fingerprint())
        with pytest.raises(ValueError, match="other data"):
            placebo.check_data("0" * 64)


def test_labelled_part_is_tiled_to_a_quarter_of_the_transfer_set() -> None:
    import numpy as np

    from orchestrator.bench.transfer import LABELLED_EVALS, tile

    assert tile(np.array([4, 7]), 9).tolist() == [4, 7] * 4  # 2 labelled, about 9 per "epoch": 4 passes
    assert tile(np.array([1, 2, 3]), 3).tolist() == [1, 2, 3]
    assert LABELLED_EVALS == 4 and len(tile(np.arange(500), 5876 // LABELLED_EVALS)) == 1500


def test_overhead_benchmark_tiny_shares_the_cache_builder(tmp_path, local_data) -> None:
    """``overhead`` builds the same one-pass cache as the transfer check (``build_shared_cache``) and times it."""
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.bench",
            "overhead",
            "--size",
            "tiny",
            "--data",
            str(local_data),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert set(r["methods"]) == {"kd", "dist", "pkd", "ckd"}
    assert r["teacher_passes"] == 1 and r["cache_bytes"] > 0
    assert all(m["cached_s"] > 0 and m["online_s"] > 0 for m in r["methods"].values())


def test_hole_window_keeps_the_signature_and_the_lines_around_the_hole(tmp_path, local_data) -> None:
    from tasks.hole_window import DataError, hole_window_data, window_function

    code = "\n".join(
        [
            "def f(x):",
            *[f"    a{i} = {i}" for i in range(10)],
            "    try:",
            "        g()",
            "    except __HOLE__:",
            "        pass",
            "    return 1",
            "    # end",
        ]
    )
    cut = window_function(code, before=2, after=1).split("\n")
    assert cut == ["def f(x):", "    try:", "        g()", "    except __HOLE__:", "        pass"]
    # a hole near the top: nothing before the signature is repeated
    assert window_function("def f():\n    try: g()\n    except __HOLE__: pass", 6, 2).count("def f") == 1
    with pytest.raises(ValueError, match="__HOLE__"):
        window_function("def f():\n    pass", 2, 1)

    out = hole_window_data(local_data, tmp_path / "win", 6, 2)
    for split in ("train", "validation", "test"):
        src = [json.loads(x) for x in (local_data / "exception" / f"{split}.jsonl").read_text().splitlines()]
        got = [json.loads(x) for x in (out / "exception" / f"{split}.jsonl").read_text().splitlines()]
        assert [r["label"] for r in got] == [r["label"] for r in src]
        assert all(r["function"].count("__HOLE__") == 1 for r in got)
        assert all(len(g["function"].split("\n")) <= 10 for g in got)
        assert all(g["function"].split("\n")[0] == s["function"].split("\n")[0] for g, s in zip(got, src))
    with pytest.raises(DataError, match="build_local"):
        hole_window_data(tmp_path / "nothing", tmp_path / "w2", 6, 2)


def test_a_workers_runner_gives_the_same_runs_as_the_parents(tmp_path, local_data, tiny_teacher) -> None:
    """The gpu size runs students in worker processes, each building its own runner from the pool's start-up
    arguments and attaching to the parent's cache. Every run seeds itself, so such a runner gives exactly the
    parent's runs (on a CPU), in any order. (The worker start-up is called here in-process: spawning processes
    that import torch takes minutes on a busy 2-core machine.)"""
    import dataclasses

    from orchestrator.bench import transfer_pool
    from orchestrator.bench.transfer import TransferRunner
    from tasks.hole_window import hole_window_data

    size = dataclasses.replace(SIZES["tiny"], workers=2)
    data = str(hole_window_data(local_data, tmp_path / "data", *size.hole_window))
    runner = TransferRunner(size, data, tmp_path / "work", "cpu")
    runner.open_cache(tiny_teacher)
    jobs = [
        ("ckd", {"lr": 1e-3, "beta": 1.0, "gamma": 1.0}, 1, "placebo"),
        ("kd", {"lr": 1e-3, "temperature": 2.0}, 0, "same_labels"),
        ("ft", {"lr": 1e-3}, 0, "transfer"),
    ]
    with transfer_pool.Pool(runner, data, 1) as here:
        alone = here.map(jobs)
    # what a worker process runs at start-up and per job, called here
    transfer_pool._init(runner.size, data, str(runner.work), runner.device, runner.cache, 1)
    assert transfer_pool._RUNNER is not runner
    apart = [transfer_pool._job(job) for job in reversed(jobs)][::-1]
    for a, b in zip(alone, apart):
        assert (a["test"], a["val"], a["selection"], a["steps"]) == (
            b["test"],
            b["val"],
            b["selection"],
            b["steps"],
        )


def test_transfer_design_measures_teacher_and_ft_per_labelled_count(
    tmp_path, local_data, tiny_teacher
) -> None:
    """``transfer-design``: per labelled count the teacher and FT on that many labels (no KD outcome), then the
    costs (the cache's teacher pass, seconds per step of every method) and the projected run time."""
    out = tmp_path / "design.json"
    args = ("--size", "tiny", "--labelled", "8,24", "--data", str(local_data), "--work", str(tmp_path / "w"))
    proc = _bench("transfer-design", *args, "--teacher", str(tiny_teacher), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [row["labelled"] for row in r["counts"]] == [8, 24]
    for row in r["counts"]:
        assert row["advantage_val"] == pytest.approx(row["teacher"]["val"] - row["ft"]["val"])
        assert len(row["ft"]["candidates"]) == 1 and 0 <= row["ft"]["val_majority_baseline"] <= 1
        assert row["ft"]["above_baseline"] == (row["ft"]["val"] > row["ft"]["val_majority_baseline"] + 0.005)
    t = r["timing"]
    assert t["labelled"] == 24 and set(t["step_s"]) == {"ft", "kd", "dist", "pkd", "ckd"}
    assert all(s > 0 for s in t["step_s"].values()) and t["cache_s"] > 0
    assert 0 <= t["teacher_on_unlabelled_inputs"]["accuracy"] <= 1 and r["projected_check_minutes"] > 0
    assert "projected check" in proc.stdout
