"""Issue 13, with real drivers: two drivers on one study (one refused, nothing duplicated) and a fault at start-up
(everything the driver started stopped, the parent run closed with the reason)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, write_study
from mlflow.tracking import MlflowClient

from orchestrator.core.paths import local_store_uri
from orchestrator.design.study import build_plan, load_spec
from orchestrator.study import run_study


def _runs(uri: str, study: str, stage: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=1000)


def test_two_drivers_started_together_run_every_trial_once(tmp_path, local_data):
    # the smallest study with every stage: one task, a 2-layer random teacher, FT and KD, one epoch on 32 samples
    path = write_study(tmp_path / "pair.yaml", local_data, storage=str(tmp_path / "runs"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # one MLflow store for both, new (no schema yet)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "orchestrator.study", str(path)]
    drivers = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [d.communicate(timeout=600) for d in drivers]
    codes = [d.returncode for d in drivers]
    assert sorted(codes) == [0, 2], outs
    first, second = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = outs[second][1].strip().splitlines()
    assert len(refusal) == 1 and refusal[0].startswith("error: "), outs[second][1]
    assert f"PID {drivers[first].pid}" in refusal[0] and "in use by another driver" in refusal[0]

    planned = {t.trial_key for t in build_plan(load_spec(path)).trials}
    finished = Counter(
        r.data.tags["trial_key"] for r in _runs(uri, "pair", "student") if r.info.status == "FINISHED"
    )
    assert set(finished) == planned and set(finished.values()) == {1}
    assert not [r for r in _runs(uri, "pair", "student") if r.info.status != "FINISHED"]
    assert len(_runs(uri, "pair", "teacher_cache")) == len(_runs(uri, "pair", "teacher_finetune")) == 1
    caches = [
        p
        for p in (tmp_path / "runs" / "teacher_cache").iterdir()
        if p.is_dir() and not p.name.startswith(".")
    ]
    assert len(caches) == 1
    assert not (tmp_path / "runs" / "pair" / "driver.lock").exists()


def test_fault_at_ray_start_stops_the_server_and_closes_the_parent_run(
    tmp_path, local_data, monkeypatch, capsys
):
    import ray

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the study starts its own MLflow server

    def ray_times_out(*args: object, **kwargs: object) -> None:
        raise TimeoutError("Ray did not start within 60 s (injected)")

    monkeypatch.setattr(ray, "init", ray_times_out)
    storage = tmp_path / "runs"
    spec = load_spec(write_study(tmp_path / "fault.yaml", local_data, storage=str(storage)))
    with pytest.raises(TimeoutError, match="injected"):
        run_study(spec)
    out = capsys.readouterr().out
    pid = int(re.search(r"MLflow server \(started by this study, PID (\d+)\)", out).group(1))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not [p for p in psutil.Process().children(recursive=True) if "mlflow" in " ".join(p.cmdline())]
    parent = _runs(local_store_uri(storage), "fault", "study")[0]
    assert parent.info.status == "FAILED" and "injected" in parent.data.tags["error"]
    assert not (storage / "fault" / "driver.lock").exists()
    # the long pytest path needs a /tmp/kdr-* link for Ray's sockets: a start that failed removes it too
    assert not [
        p for p in Path("/tmp").glob("kdr-*") if p.is_symlink() and os.readlink(p).startswith(str(storage))
    ]
