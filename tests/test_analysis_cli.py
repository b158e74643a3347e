"""``python -m orchestrator.analysis``: a user's mistake is one line ``error: ...`` with exit status 2, never a
traceback, and nothing is created on the way (issue 24)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.analysis import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study's storage whose MLflow store holds one study, ``real``."""
    storage = tmp_path_factory.mktemp("storage")
    (storage / "mlflow").mkdir()
    MlflowClient(f"sqlite:///{storage / 'mlflow' / 'mlflow.db'}").create_experiment("real")
    return storage


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KDSTUDY_STATE_DIR", str(tmp_path / "state"))  # no remembered storages


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's own exit, through OneLineParser.error
        status = int(exit_.code or 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return status, out.err


def _one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _run(capsys, "notebooks", "--bogus")
    assert status == 2 and "unrecognized arguments: --bogus" in _one_line(err)
    status, err = _run(capsys)
    assert status == 2 and "command" in _one_line(err)
    status, err = _run(capsys, "plots")
    assert status == 2 and "'notebooks'" in _one_line(err)  # the valid choice is named


def test_missing_store_and_unknown_study(
    capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    status, err = _run(capsys, "notebooks", "--study", "real", "--storage", str(empty))
    assert status == 2 and "does not exist" in _one_line(err) and "--storage" in err
    assert not empty.exists()  # nothing created on the way
    status, err = _run(capsys, "notebooks", "--study", "nosuch", "--storage", str(store))
    assert status == 2 and "'nosuch'" in _one_line(err) and "['real']" in err


def test_tracking_uri_that_leads_nowhere(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    status, err = _run(capsys, "notebooks", "--study", "real")
    assert status == 2 and "does not exist" in _one_line(err)
    assert not db.exists()  # MLflow would have created an empty store there
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    status, err = _run(capsys, "notebooks", "--study", "real")
    assert status == 2 and "unreachable" in _one_line(err)


def test_unwritable_out(capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, err = _run(
        capsys, "notebooks", "--study", "real", "--storage", str(store), "--out", str(blocker / "x")
    )
    assert status == 2 and f"--out {blocker / 'x'}" in _one_line(err)


def test_a_failing_notebook_is_one_line_naming_its_copy(tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    err = CellExecutionError("Traceback ...", "AssertionError", "no KD student runs in this study")
    err.notebook, err.executed_copy = "02_rq2_teachers.ipynb", tmp_path / "02_rq2_teachers.ipynb"
    line, status = cli._one_line(err)
    assert status == 1 and "\n" not in line
    assert line.startswith("02_rq2_teachers.ipynb failed: AssertionError: no KD student runs in this study")
    assert str(tmp_path / "02_rq2_teachers.ipynb") in line


def test_the_module_entry_point(store: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(ROOT), KDSTUDY_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.analysis",
            "notebooks",
            "--study",
            "gone",
            "--storage",
            str(store),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "study 'gone' is not in" in _one_line(out.stderr)


def test_two_storages_with_a_study_of_one_name_keep_theirs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 24: the study index was keyed by study name, so a second storage's ``smoke`` redirected the first's
    ``--status`` and notebooks. Keyed by storage, each study file finds its own; a bare name held by two storages
    is one line naming both."""
    from conftest import write_study

    from orchestrator.study_index import remember_storage, remembered_storage
    from orchestrator.sweep.report import remembered_for

    a, b = tmp_path / "a", tmp_path / "b"
    for storage in (a, b):
        (storage / "mlflow").mkdir(parents=True)
        MlflowClient(f"sqlite:///{storage / 'mlflow' / 'mlflow.db'}").create_experiment("smoke")
    files = {s: write_study(s / "smoke.yaml", tmp_path, storage=str(s)) for s in (a, b)}
    remember_storage("smoke", a)
    remember_storage("smoke", b)  # the later run, in another storage
    assert remembered_for(str(files[a])) == str(a.resolve())  # not b's, the latest
    assert remembered_for(str(files[b])) == str(b.resolve())
    remember_storage("other", b)
    assert remembered_storage("other") == b.resolve() and remembered_storage("nosuch") is None
    status, err = _run(capsys, "notebooks", "--study", "smoke")
    err = err.splitlines()[-1]  # (after MLflow's lines about creating the two stores above)
    assert status == 2 and err.startswith("error: study 'smoke' ran in 2 storages")
    assert str(a.resolve()) in err and str(b.resolve()) in err and "--storage" in err
