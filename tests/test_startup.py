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
HEAVY = ("torch", "ray", "transformers", "mlflow", "pandas", "sklearn")
COMMANDS = [
    ["orchestrator.study", "--help"],
    ["orchestrator.trial", "--help"],
    ["orchestrator.finetune_teacher", "--help"],
    ["orchestrator.bench", "--help"],
    ["orchestrator.bench", "overhead", "--help"],
    ["orchestrator.bench", "packing", "--help"],
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
