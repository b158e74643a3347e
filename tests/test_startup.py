"""Every command's ``--help`` is built from light modules: no torch, Ray, transformers or MLflow is imported.

Checked with ``python -X importtime`` in a fresh interpreter (what was imported, not how long it took, so the test
does not depend on the machine's load)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pydantic is allowed: `tasks` validates declared tasks with it (tasks/custom.py), and it costs about 0.1 s
# (`orchestrator.trial --help` took 0.22 s in all here); the libraries below take seconds each.
HEAVY = ("torch", "ray", "transformers", "mlflow", "pandas", "sklearn")
COMMANDS = [
    ["orchestrator.study", "--help"],
    ["orchestrator.trial", "--help"],
    ["orchestrator.finetune_teacher", "--help"],
    ["orchestrator.bench", "--help"],
    ["orchestrator.bench", "overhead", "--help"],
    ["orchestrator.bench", "packing", "--help"],
    ["orchestrator.bench", "diagnose", "--help"],
]


def imported_packages(args: list[str]) -> tuple[set[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # importtime lines: "import time: self [us] | cumulative | imported package"
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names, proc.stdout


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    names, out = imported_packages(args)
    assert "usage:" in out
    assert "argparse" in names  # the parse really ran in this interpreter, and importtime saw it
    heavy = sorted(set(HEAVY) & names)
    assert not heavy, f"`python -m {' '.join(args)}` imported {heavy}"


def test_packing_bench_measures_each_count_and_writes_json(local_data: Path, tmp_path: Path) -> None:
    """``python -m orchestrator.bench packing``: real trials in parallel processes, one round per count."""
    import json

    from orchestrator.bench.cli import main

    out = tmp_path / "packing.json"
    args = [
        "packing",
        "--size",
        "tiny",
        "--counts",
        "1,2",
        "--data",
        str(local_data),
        "--work",
        str(tmp_path),
    ]
    assert main([*args, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["trials"] for r in results["rounds"]] == [1, 2]
    one, two = results["rounds"]
    assert one["threads_per_trial"] >= two["threads_per_trial"] >= 1
    for r in results["rounds"]:
        assert r["wall_s"] > 0 and r["trials_per_hour"] == pytest.approx(r["trials"] * 3600 / r["wall_s"])
        assert r["precision"] == "fp32" == results["precision"]
    assert one["speedup_vs_1"] == pytest.approx(1.0) and results["student_params"] > 0


def test_packing_memory_check_refuses_what_does_not_fit() -> None:
    from orchestrator.sweep.packing import GIB, PackingError, TrialMemory, check_packing, trial_bytes

    one = TrialMemory("roberta-7m", trial_bytes(7_000_000, 256, 4, 32, 512, "bf16"))
    assert 0.6 * GIB < one.bytes < 4 * GIB
    assert "trials per GPU: 4" in check_packing(4, [one], 80 * GIB)
    with pytest.raises(
        PackingError, match=r"trials_per_gpu: 8 trials of roberta-7m need about .* at most \d+ fit"
    ):
        check_packing(8, [one], 4 * GIB)


def test_the_light_name_lists_match_the_registries() -> None:
    """The commands' --student/--method choices come from orchestrator/cli_help.py (no torch); they must list
    exactly the registered classification students and methods."""
    from kd_methods import METHODS
    from models import STUDENTS
    from orchestrator.cli_help import METHOD_NAMES, STUDENT_NAMES

    assert set(STUDENT_NAMES) == set(STUDENTS)
    assert set(METHOD_NAMES) == set(METHODS) - {"distil"}


def test_plan_imports_neither_ray_nor_mlflow(tmp_path: Path) -> None:
    """``--plan`` of a study that never ran (no MLflow store under its storage) starts and imports neither."""
    names, out = imported_packages(["orchestrator.study", "smoke", "--plan", "--storage", str(tmp_path)])
    assert "GPU-hours (est.)" in out and "--calibrate" in out
    assert not {"ray", "mlflow"} & names
