"""``python -m orchestrator.bench completion-kd``: distil vs the LM-only baseline, end to end at the tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.build_local import build_local
    from tasks.completion.proxy import ProxySettings

    out = tmp_path_factory.mktemp("completion-data")
    return build_local(out, tasks=["completion"], completion=ProxySettings(max_mb=0.3, line_samples=12))[
        "completion"
    ]


def test_tiny_run_pairs_every_seed_and_reads_the_teacher_only_for_distil(proxy: Path, tmp_path: Path) -> None:
    from orchestrator.bench.completion_kd import SIZES, completion_kd

    out = completion_kd("tiny", str(proxy), tmp_path / "work", device="cpu")
    seeds = list(SIZES["tiny"].seeds)
    assert [(r["method"], r["seed"]) for r in out["runs"]] == [
        (m, s) for s in seeds for m in ("distil", "lm_only")
    ]
    by = {(r["method"], r["seed"]): r for r in out["runs"]}
    for s in seeds:
        # the baseline never calls the teacher; distil does, at every step
        assert by[("lm_only", s)]["teacher_seconds"] == 0 and by[("distil", s)]["teacher_seconds"] > 0
        # same init, data and order, different loss: the students must end up different
        assert by[("distil", s)]["best_val_ppl"] != by[("lm_only", s)]["best_val_ppl"]
    p = out["paired"]["best_val_ppl"]
    assert p["distil"] == [by[("distil", s)]["best_val_ppl"] for s in seeds]
    assert p["mean_delta"] == pytest.approx(
        sum(a - b for a, b in zip(p["distil"], p["lm_only"])) / len(seeds)
    )
    assert 0 <= out["teacher"]["test_es"] <= 100 and out["data"]["test_lines"] == SIZES["tiny"].line_test
    assert out["teacher"]["best_val_ppl"] > 1 and out["teacher"]["steps"] > 0


def test_command_line_refuses_a_missing_folder(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "orchestrator.bench", "completion-kd", "--size", "tiny", "--device", "cpu"]
    missing = subprocess.run([*cmd, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode != 0 and not (tmp_path / "x.json").exists()
    assert "nope" in missing.stderr
