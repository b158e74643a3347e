"""The knowledge-transfer check (``python -m orchestrator.bench transfer``): its statistics by hand, and the whole
check end to end at the tiny size on the real pretrained MiniLM teacher."""

from __future__ import annotations

import json
import math
import subprocess
import sys

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


def test_transfer_check_end_to_end_tiny(tmp_path, local_data) -> None:
    out = tmp_path / "transfer.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.bench",
            "transfer",
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
    assert r["task"] == "clone" and r["seeds"] == [0, 1]
    assert set(r["teacher"]) >= {"name", "score"} and r["teacher"]["name"] == "minilm"
    assert 0 <= r["teacher"]["score"] <= 1 and 0 <= r["majority_baseline"] <= 1
    assert set(r["ft"]) >= {"mean", "sd", "scores"} and len(r["ft"]["scores"]) == 2
    assert set(r["methods"]) == {"kd", "dist", "pkd", "ckd"}
    for name, m in r["methods"].items():
        assert set(m) >= {"mean_delta", "ci95", "p_value", "scores", "params"}, name
        assert len(m["scores"]) == 2 and len(m["ci95"]) == 2
        assert m["degenerate_seeds"] == sum(x <= r["majority_baseline"] + 0.005 for x in m["scores"])
        deltas = [a - b for a, b in zip(m["scores"], r["ft"]["scores"])]
        assert m["mean_delta"] == pytest.approx(sum(deltas) / 2)
    assert "passed" in r["verdict"]
    assert "no ci95 wholly below 0" in proc.stdout


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
    from orchestrator.bench.transfer_data import hole_window_data, window_function

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
    with pytest.raises(FileNotFoundError, match="build_local"):
        hole_window_data(tmp_path / "nothing", tmp_path / "w2", 6, 2)
