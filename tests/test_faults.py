"""Issue 24, faults injected into small running studies (real Ray, the study's own MLflow server and store): a
killed trial worker, Ctrl-C on the driver, a killed MLflow server, a deleted or half-written teacher, storage that
cannot be used. Each test runs the study as a user does (``python -m orchestrator.study``), injects the fault, and
checks what the user sees and what the store holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import ROOT, write_study
from mlflow.tracking import MlflowClient

from orchestrator.core.paths import local_store_uri

LONG_TRIALS = {
    "epochs": 6,
    "batch_size": 8,
    "lr": 0.001,
    "max_length": 48,
}  # a few seconds each: time to inject


def _finished_study(path: Path) -> subprocess.CompletedProcess:
    """``python -m orchestrator.study <path>`` run to its end; it must exit 0 (else its output's tails are shown)."""
    cmd = [sys.executable, "-m", "orchestrator.study", str(path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _driver(path: Path, storage: Path, *extra: str) -> subprocess.Popen:
    """A study driver in its own session (as a terminal runs it: Ctrl-C reaches its whole process group)."""
    env = {
        k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"
    }  # the study starts its own server
    cmd = [sys.executable, "-m", "orchestrator.study", str(path), "--storage", str(storage), *extra]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _runs(storage: Path, study: str, stage: str) -> list:
    # Read the store once the study has made it (ray_results: the trial stage started): a client on a store still
    # being created would run MLflow's schema migration beside the server's.
    if not (storage / study / "ray_results").is_dir():
        return []
    client = MlflowClient(local_store_uri(storage))
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=1000) if exp else []


def _wait_for(driver: subprocess.Popen, ready, timeout: float = 300) -> None:
    """Poll ``ready()`` until true; the driver must still be running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert driver.poll() is None, "the driver ended before the fault: " + driver.communicate()[1][-3000:]
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001, S110 - the store may not exist yet
            pass
        time.sleep(0.5)
    raise AssertionError("the study never reached the point of the fault")


def _running_student(storage: Path, study: str) -> bool:
    return any(r.info.status == "RUNNING" for r in _runs(storage, study, "student"))


def _trial_workers(pid: int) -> list[psutil.Process]:
    """The Ray worker processes running a Tune trial (the function trainable's actor), among the driver's."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def _stop(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        for p in [*psutil.Process(driver.pid).children(recursive=True), psutil.Process(driver.pid)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        driver.wait(30)


def test_killed_trial_without_retries_is_failed_with_its_reason(tmp_path, local_data):
    path = write_study(
        tmp_path / "killed.yaml", local_data, methods=["ft"], max_failures=0, max_samples=64,
        student_train=LONG_TRIALS,
    )  # fmt: skip
    storage = tmp_path / "runs"
    driver = _driver(path, storage)
    try:
        _wait_for(driver, lambda: _running_student(storage, "killed") and _trial_workers(driver.pid))
        victim = _trial_workers(driver.pid)[0]
        victim.kill()
        out, err = driver.communicate(timeout=300)
    finally:
        _stop(driver)
    assert driver.returncode == 1, out[-3000:] + err[-3000:]
    runs = _runs(storage, "killed", "student")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and not [r for r in runs if r.info.status in ("RUNNING", "KILLED")], runs
    reason = failed[0].data.tags["error"]
    assert "retried" not in reason and "worker" in reason and "died" in reason.lower(), reason
    assert "1 failed" in out and "trial failed for good" in out
    assert "Traceback" not in err, err[-3000:]  # Tune's traceback of the dead worker: in the study's tune.log
    assert "ActorDiedError" in (storage / "killed" / "tune.log").read_text()
    st = _driver(path, storage, "--status", "--json")
    import json

    status = json.loads(st.communicate(timeout=120)[0])
    assert status["failed"] == 1 and status["failed_trials"][0]["error"] == reason


def test_ctrl_c_marks_the_study_killed_and_leaves_nothing_running(tmp_path, local_data):
    path = write_study(
        tmp_path / "ctrlc.yaml", local_data, methods=["ft"], max_samples=64, student_train=LONG_TRIALS
    )
    storage = tmp_path / "runs"
    driver = _driver(path, storage)
    try:
        _wait_for(driver, lambda: _running_student(storage, "ctrlc"))
        family = psutil.Process(driver.pid).children(recursive=True)
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out, err = driver.communicate(timeout=120)
    finally:
        _stop(driver)
    assert driver.returncode == 130, out[-3000:] + err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err[-3000:]
    parent = _runs(storage, "ctrlc", "study")[0]
    assert parent.info.status == "KILLED" and "KeyboardInterrupt" in parent.data.tags["error"]
    runs = _runs(storage, "ctrlc", "student")
    assert [r.info.status for r in runs] == ["KILLED"], runs  # the trial it stopped: interrupted, not failed
    assert "interrupted" in runs[0].data.tags["error"], runs
    time.sleep(2)
    assert not _alive(family), _alive(family)
    assert not (storage / "ctrlc" / "driver.lock").exists()


def _lines(driver: subprocess.Popen) -> list[str]:
    """The driver's stdout lines as they come (read by a thread; the list grows)."""
    import threading

    lines: list[str] = []

    def read() -> None:
        for line in driver.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    driver.reader = reader  # type: ignore[attr-defined] - joined once the driver has ended
    return lines


def test_killed_mlflow_server_is_started_again_and_the_study_finishes(tmp_path, local_data):
    import re

    path = write_study(
        tmp_path / "lost.yaml", local_data, methods=["ft"], max_samples=64, student_train=LONG_TRIALS
    )
    storage = tmp_path / "runs"
    driver = _driver(path, storage)
    lines = _lines(driver)
    try:
        _wait_for(driver, lambda: _running_student(storage, "lost"))
        pid = int(re.search(r"MLflow server \(started by this study, PID (\d+)\)", "".join(lines)).group(1))
        first = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        os.killpg(pid, signal.SIGKILL)  # the server and every process it started
        start = time.time()
        _wait_for(driver, lambda: "running again" in "".join(lines), timeout=60)
        assert time.time() - start < 30  # within seconds, not a half-hour of connection retries
        driver.wait(timeout=300)
        driver.reader.join(10)
        err = driver.stderr.read()
    finally:
        _stop(driver)
    out = "".join(lines)
    assert driver.returncode == 0, out[-3000:] + err[-3000:]
    assert f"MLflow server (PID {pid}) stopped" in out
    runs = _runs(storage, "lost", "student")
    assert [r.info.status for r in runs] == ["FINISHED"], runs  # the trial running meanwhile went on
    assert _runs(storage, "lost", "study")[0].info.status == "FINISHED"
    # nothing of either server is left: each was stopped by its process group
    new_pid = int(re.search(r"running again \(PID (\d+)\)", out).group(1))
    assert not _alive(first)
    left = [p for p in psutil.process_iter() if _group(p) in (pid, new_pid)]
    assert not _alive(left), left


def _group(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return None


def test_deleted_and_half_written_teachers_are_made_again(tmp_path, local_data):
    storage = tmp_path / "runs"
    path = write_study(tmp_path / "teach.yaml", local_data, methods=["kd"], storage=str(storage))
    _finished_study(path)
    tuned = [p for p in (storage / "teachers").iterdir() if (p / "finetune.json").exists()]
    base = next(
        p for p in (storage / "teachers" / "base").iterdir() if not p.name.startswith(".")
    )  # not .lock
    assert len(tuned) == 1
    import shutil

    shutil.rmtree(tuned[0])  # the fine-tuned teacher deleted
    (base / "model.safetensors").unlink()  # the base left as a full disk left it: config.json without weights
    (storage / "teachers" / f".{tuned[0].name}.partial-killed").mkdir()  # a killed fine-tune's leftovers
    leftover = storage / "teach" / "scratch" / "trial-killed"  # a killed trial's scratch folder
    leftover.mkdir(parents=True)
    (leftover / "best.safetensors").write_bytes(b"half")
    write_study(path, local_data, methods=["kd"], seeds=[0, 1], storage=str(storage))  # and one seed more
    out = _finished_study(path)
    assert "stage teacher_finetune: 1 to run" in out.stdout and "2/2 trials FINISHED" in out.stdout
    assert (tuned[0] / "model.safetensors").is_file() and (tuned[0] / "finetune.json").is_file()
    assert (base / "model.safetensors").is_file()
    assert not list((storage / "teachers").rglob("*.partial-*")) and not leftover.exists()
    runs = _runs_of(storage, "teach", "student")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"], runs


def _runs_of(storage: Path, study: str, stage: str) -> list:
    client = MlflowClient(local_store_uri(storage))
    return client.search_runs([client.get_experiment_by_name(study).experiment_id], f"tags.stage = '{stage}'")


def test_read_only_storage_is_one_line_exit_2(tmp_path, local_data):
    # a read-only file system of its own: a tmpfs mounted read-only in a user namespace (no root needed)
    path = write_study(tmp_path / "ro.yaml", local_data)
    mount = tmp_path / "ro"
    mount.mkdir()
    study = f"{sys.executable} -m orchestrator.study {path} --storage {mount / 'runs'}"
    script = f"mount -t tmpfs -o size=1m,ro tmpfs {mount} && cd {ROOT} && {study}"
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0] == f"error: storage: {mount} is on a read-only file system; pass a writable --storage"


def test_non_ascii_storage_path_runs(tmp_path, local_data):
    storage = tmp_path / "läufe ü"
    path = write_study(tmp_path / "umlaut.yaml", local_data, methods=["ft"], storage=str(storage))
    out = _finished_study(path)
    assert "1/1 trials FINISHED" in out.stdout and "not ASCII" in out.stdout
    assert [r.info.status for r in _runs_of(storage, "umlaut", "student")] == ["FINISHED"]
    links = [p for p in Path("/tmp").glob("kdr-*") if p.is_symlink()]  # (other kdr-* entries: not ours)
    assert not [p for p in links if os.readlink(p).startswith(str(storage))]


def test_two_studies_on_a_fresh_storage_started_together_both_finish(tmp_path, local_data):
    storage = tmp_path / "runs"  # fresh: no MLflow store yet
    paths = [
        # kd: both need the same random base teacher, the same fine-tuned teacher and the same cache
        write_study(tmp_path / f"{n}.yaml", local_data, methods=["kd"], storage=str(storage))
        for n in "ab"
    ]
    cmds = [[sys.executable, "-m", "orchestrator.study", str(p)] for p in paths]
    drivers = [
        subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds
    ]
    outs = [d.communicate(timeout=300) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], [(o[0][-4000:], o[1][-4000:]) for o in outs]
    tuned = [p for p in (storage / "teachers").iterdir() if (p / "finetune.json").exists()]
    assert len(tuned) == 1 and not list(storage.rglob("*.partial-*")), list((storage / "teachers").rglob("*"))
    for name in "ab":
        assert [r.info.status for r in _runs_of(storage, name, "student")] == ["FINISHED"]
        assert [r.info.status for r in _runs_of(storage, name, "teacher_finetune")] == ["FINISHED"]
        log = storage / "mlflow" / f"server-{name}.log"
        assert log.is_file() and "already exists" not in log.read_text()


def test_full_disk_is_one_line_exit_2_and_the_rerun_after_making_room_finishes(tmp_path, local_data):
    """A storage on a 16 MiB tmpfs (its own, in a user namespace): the 9 MiB fine-tuned teacher does not fit beside
    the 9 MiB base teacher and the store. Then the same tmpfs is made larger (room made) and the study run again."""
    import hashlib

    big = {"name": "tiny", "source": "random:roberta", "layers": 4, "hidden": 256}  # 2.4M params, 9.4 MiB
    path = write_study(tmp_path / "full.yaml", local_data, methods=["kd"], teachers=[big])
    mount, out = tmp_path / "disk", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    storage = mount / "runs"
    study = f"{sys.executable} -m orchestrator.study {path} --storage {storage}"
    script = (
        f"mount -t tmpfs -o size=16m tmpfs {mount} && cd {ROOT} && "
        f"{{ {study} >{out}/1.out 2>{out}/1.err; echo $? >{out}/1.rc; }}; "
        f"find {storage} -name '*.partial-*' -o -name '*.tmp-*' >{out}/left; cp -a {storage} {out}/first; "
        f"mount -o remount,size=64m {mount} && {study} >{out}/2.out 2>{out}/2.err; echo $? >{out}/2.rc; "
        f"cp -a {storage} {out}/second"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], timeout=600, check=True)
    first, second = ((out / f"{n}.out").read_text() + (out / f"{n}.err").read_text() for n in (1, 2))
    assert (out / "1.rc").read_text().strip() == "2", first[-3000:]
    lines = (out / "1.err").read_text().strip().splitlines()
    assert "Traceback" not in first, first[-3000:]
    assert lines[-1].startswith("error: storage: the disk is full"), first[-3000:]
    assert "No space left on device" in lines[-1] and str(storage) in lines[-1], lines[-1]
    assert (out / "left").read_text().split() == [], "partial or temporary folders left"
    failed = _runs_of(out / "first", "full", "study")[0]
    assert failed.info.status == "FAILED" and "the disk is full" in failed.data.tags["error"]

    assert (out / "2.rc").read_text().strip() == "0", second[-3000:]
    assert "1/1 trials FINISHED" in second, second[-3000:]
    ended = [x for x in second.splitlines() if "teacher fine-tune defect/" in x and "finished after" in x]
    assert len(ended) == 1, ended  # printed once (it was printed again while the cache was built)
    parent = _runs_of(out / "second", "full", "study")[0]
    assert parent.info.status == "FINISHED" and "error" not in parent.data.tags, parent.data.tags
    # the store's MLflow files stay under the storage too (issue 24: /tmp/db_init_lock-<hash> for every store)
    url = f"sqlite:///{storage / 'mlflow' / 'mlflow.db'}"
    assert not Path(f"/tmp/db_init_lock-{hashlib.md5(url.encode()).hexdigest()}").exists()


def test_copied_storage_writes_new_artifacts_into_its_own_path(tmp_path, local_data):
    """Issue 24: the experiment's artifact location is the absolute path of the storage it was made in, so a copy
    went on writing into the original. The copy's store is made its own when a study starts on it."""
    import re
    import shutil

    first = tmp_path / "first"
    path = write_study(tmp_path / "moved.yaml", local_data, methods=["ft"], storage=str(first))
    one = _finished_study(path)
    port = re.search(r"MLflow server \(started by this study, PID \d+\): http://127.0.0.1:(\d+)", one.stdout)[
        1
    ]
    assert f"--port {port}   # then open http://127.0.0.1:{port}" in one.stdout  # its port, not 5000
    assert f"the runs:  http://127.0.0.1:{port}/#/experiments/" in one.stdout
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(first), str(copy)], check=True)  # as a user copies it (Ray's sockets too)
    shutil.rmtree(first)
    write_study(
        path, local_data, methods=["ft"], seeds=[0, 1], storage=str(copy)
    )  # one seed more, on the copy
    _finished_study(path)
    assert not first.exists(), "the copy wrote into the old storage's path"
    client = MlflowClient(local_store_uri(copy))
    runs = _runs_of(copy, "moved", "student")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    here = (copy / "mlflow" / "artifacts").as_uri()
    assert client.get_experiment_by_name("moved").artifact_location.startswith(here)
    for run in runs:  # the old run's and the new run's artifacts: under the copy, read by a plain client
        assert run.info.artifact_uri.startswith(here), run.info.artifact_uri
        names = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
        assert names == {"predictions/test.json"}, names
