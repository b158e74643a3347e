"""A SQLite MLflow store that another process, one without the study's lock, is still making (core/store.py)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_study
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _get_latest_schema_revision
from mlflow.tracking import MlflowClient

from orchestrator.analysis.store import StoreNotFound, store_uri
from orchestrator.core import store
from orchestrator.core.errors import StudyError
from orchestrator.core.store import absolute_sqlite_uri, init_store, schema_version
from orchestrator.design.study import load_spec
from orchestrator.sweep.fastpath import nothing_left
from orchestrator.sweep.status import status


def _foreign_client(db: Path) -> subprocess.Popen:
    """A plain MlflowClient in another process (as `mlflow ui` or a notebook would): it makes a new store itself,
    running MLflow's whole schema migration, and takes no lock of ours."""
    code = f"from mlflow import MlflowClient; MlflowClient('sqlite:///{db}').search_experiments()"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_file(path: Path, process: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, "the other process never made the store"
        time.sleep(0.005)


def test_a_store_another_process_is_still_making_is_waited_for(tmp_path):
    db = tmp_path / "mlflow.db"
    other = _foreign_client(db)
    _wait_for_file(db, other)  # its migration has begun (it takes ~1 s from here)
    assert schema_version(db) != _get_latest_schema_revision()
    init_store(f"sqlite:///{db}", own=False)
    assert schema_version(db) == _get_latest_schema_revision()  # complete when we go on
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, out[-3000:]  # and the other process was not broken by us either
    assert [e.name for e in MlflowClient(f"sqlite:///{db}").search_experiments()] == ["Default"]


def test_a_store_left_behind_fails_with_mlflows_own_message(tmp_path):
    db = tmp_path / "mlflow.db"
    init_store(f"sqlite:///{db}", own=False)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'c48cb773bb87'")  # an older MLflow's revision
    began = time.monotonic()
    with pytest.raises(MlflowException, match="out-of-date database schema.*mlflow db upgrade"):
        init_store(f"sqlite:///{db}", own=False)
    assert time.monotonic() - began < 15  # it waits for no one: nothing else writes the file


def test_the_wait_for_a_store_that_keeps_changing_is_bounded(tmp_path, monkeypatch):
    """An older MLflow's server still logging into its store: the file never stops changing, and never reaches
    our schema. The wait ends after WAIT_LIMIT_S in all (not per attempt) with MLflow's message."""
    db = tmp_path / "mlflow.db"
    init_store(f"sqlite:///{db}", own=False)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'c48cb773bb87'")
        con.execute("CREATE TABLE other_log (t REAL)")
    stop = threading.Event()

    def keep_writing() -> None:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            while not stop.is_set():
                with con:
                    con.execute("INSERT INTO other_log VALUES (?)", (time.time(),))
                time.sleep(0.05)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    monkeypatch.setattr(store, "WAIT_LIMIT_S", 3.0)
    began = time.monotonic()
    try:
        with pytest.raises(MlflowException, match="out-of-date database schema"):
            init_store(f"sqlite:///{db}", own=False)
    finally:
        stop.set()
        writer.join(10)
    assert 3.0 <= time.monotonic() - began < 10


def test_a_study_reads_its_store_only_once_another_process_has_made_it(tmp_path, local_data, monkeypatch):
    """The driver's first look at the store (``nothing_left``), while a plain client makes it: in CI a test's own
    MlflowClient did this to a study, and the driver died in MLflow's migration."""
    spec = load_spec(write_study(tmp_path / "beside.yaml", local_data, storage=str(tmp_path / "runs")))
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    other = _foreign_client(db)
    _wait_for_file(db, other)
    assert nothing_left(spec) is None  # nothing of the study recorded yet, and no error on the way
    assert schema_version(db) == _get_latest_schema_revision()
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, out[-3000:]


def test_status_waits_for_a_store_another_process_is_still_making(tmp_path, local_data, monkeypatch):
    """`--status` typed just after a study was started: its reading must not run MLflow's migration beside the
    driver's (the driver's own server would die on it)."""
    spec = load_spec(write_study(tmp_path / "watched.yaml", local_data, storage=str(tmp_path / "runs")))
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    other = _foreign_client(db)
    _wait_for_file(db, other)
    with pytest.raises(StudyError, match="no study 'watched'"):  # read once made: the study has not begun
        status(spec)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, out[-3000:]


def test_the_notebooks_store_lookup_waits_for_a_store_another_process_is_still_making(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    other = _foreign_client(db)
    _wait_for_file(db, other)
    with pytest.raises(StoreNotFound, match="study 'watched' is not in"):
        store_uri("watched", None)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, out[-3000:]


def test_relative_sqlite_uris_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert absolute_sqlite_uri("sqlite:///a/../b.db") == f"sqlite:///{tmp_path.resolve() / 'b.db'}"
    for kept in ("sqlite:////abs/mlflow.db", "http://127.0.0.1:5000", "sqlite://", "postgresql://h/db"):
        assert absolute_sqlite_uri(kept) == kept


def test_a_study_logging_to_a_relative_sqlite_uri_finds_its_trials_runs(tmp_path, local_data):
    """`MLFLOW_TRACKING_URI=sqlite:///mlflow.db`, MLflow's own example: the trials ran in Ray's working_dirs and
    wrote a store of their own there; the driver saw its trial fail for good."""
    path = write_study(tmp_path / "rel.yaml", local_data, methods=["ft"])
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///rel.db"}
    cmd = [sys.executable, "-m", "orchestrator.study", str(path), "--storage", "runs"]
    out = subprocess.run(
        cmd, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1/1 trials FINISHED" in out.stdout, out.stdout[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'rel.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("rel").experiment_id], "tags.stage = 'student'"
    )
    assert run.info.status == "FINISHED"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*.db")] == [Path("rel.db")]
