"""Issue 13, the fast probes: bad input refused before anything starts (one line, exit 2), the study lock, damaged
cache manifests rebuilt with the reason, unreachable tracking servers, content-identified data, true counts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_study
from test_study import _study_cli

from kd_methods import SignalSpec
from orchestrator.cache.build import get_or_build, teacher_passes
from orchestrator.cache.key import CacheCorruptError, CacheRequest
from orchestrator.cache.serve import verify
from orchestrator.core.errors import StudyError, one_line
from orchestrator.core.lock import StudyLock, StudyLocked
from orchestrator.design.study import build_plan, load_spec
from orchestrator.design.validate import check_study
from orchestrator.sweep.status import status_lines
from tasks import load_task_data


def _cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return _study_cli(*args, env=env, timeout=timeout)


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


# --- validation before anything starts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"methods": ["ft", "kd", "kd"]}, r"methods: duplicate entries \['kd'\]"),
        ({"seeds": [0, 1, 0]}, r"seeds: duplicate entries \['0'\]"),
        ({"students": ["roberta-tiny", "roberta-tiny"]}, r"students: duplicate entries \['roberta-tiny'\]"),
        ({"name": "../../evil"}, r"name: '../../evil' is not usable as a folder name"),
        ({"name": "a/b"}, r"name: 'a/b' is not usable"),
        (
            {"method_params": {"kd": {"temperature": "hot"}}},
            r"method_params.kd.temperature: must be a number",
        ),
        ({"method_params": {"kd": {"temperature": -1.0}}}, r"method_params.kd.temperature: must be > 0"),
        ({"method_params": {"kd": {"t_squared": 3}}}, r"method_params.kd.t_squared: must be true or false"),
        ({"method_params": {"ckd": {"window": 2.5}}}, r"method_params.ckd.window: must be an integer"),
        ({"method_params": {"kd": {"label_weight": -0.5}}}, r"method_params.kd.label_weight: must be >= 0"),
        ({"data": "/nonexistent/kd-data"}, r"data: folder /nonexistent/kd-data does not exist"),
        (
            {"teachers": [{"name": "t", "source": "unixcodr"}]},
            r"unknown teacher source 'unixcodr'.*aliases: .*'unixcoder'",
        ),
        ({"teachers": [{"name": "t", "source": "/no/such/teacher"}]}, r"teacher folder /no/such/teacher"),
    ],
)
def test_bad_study_is_refused_before_anything_starts(tmp_path, local_data, overrides, expected):
    data = overrides.pop("data", local_data)
    spec = load_spec(write_study(tmp_path / "s.yaml", data, storage=str(tmp_path / "runs"), **overrides))
    with pytest.raises(StudyError, match=expected):
        check_study(spec)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_bad_study_is_one_line_exit_2_for_run_and_plan_and_debug_shows_the_traceback(tmp_path, local_data):
    (tmp_path / "afile").write_text("x")
    path = write_study(
        tmp_path / "bad.yaml",
        tmp_path / "nodata",
        methods=["ft", "kd", "kd"],
        method_params={"kd": {"temperature": "hot"}},
        storage=str(tmp_path / "afile"),
    )
    for extra in ([], ["--plan"]):
        line = _one_line_error(_cli(str(path), *extra))
        assert "duplicate entries ['kd']" in line and "temperature: must be a number" in line
        assert f"storage: {tmp_path / 'afile'} is a file" in line
        assert f"data: folder {tmp_path / 'nodata'} does not exist" in line
    debug = _cli(str(path), "--plan", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "error: " in debug.stderr
    # a study file with several invalid keys is one line too
    bad = write_study(tmp_path / "keys.yaml", local_data, max_concurrent_trials="many", bogus=1)
    with pytest.raises(StudyError) as err:
        load_spec(bad)
    line = one_line(str(err.value))
    assert "\n" not in line and "bogus: unknown key" in line and "max_concurrent_trials" in line


def test_trial_cli_refuses_zero_epochs_and_batch_size(tmp_path, local_data):
    base = [sys.executable, "-m", "orchestrator.trial", "--task", "defect", "--student", "roberta-tiny"]
    base += ["--method", "ft", "--data", str(local_data), "--max-samples", "8"]
    for flag in ("--epochs", "--batch-size"):
        out = subprocess.run([*base, flag, "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        line = _one_line_error(out)
        assert f"{flag} must be >= 1" in line
    teacher = [
        sys.executable,
        "-m",
        "orchestrator.finetune_teacher",
        "--task",
        "defect",
        "--teacher",
        "minilm",
    ]
    out = subprocess.run(
        [*teacher, "--out", str(tmp_path / "t"), "--epochs", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert "--epochs must be >= 1" in _one_line_error(out) and not (tmp_path / "t").exists()


# --- the study lock ----------------------------------------------------------------------------------------


def test_second_holder_is_refused_naming_the_first(tmp_path):
    first = StudyLock(tmp_path / "study")
    holder = first.acquire()
    with pytest.raises(StudyLocked) as err:
        StudyLock(tmp_path / "study").acquire()
    msg = str(err.value)
    assert f"PID {os.getpid()}" in msg and socket.gethostname() in msg and holder.since in msg
    first.release()
    second = StudyLock(tmp_path / "study")
    second.acquire()  # free again
    second.release()
    assert not (tmp_path / "study" / "driver.lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = StudyLock(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    stale = {
        "host": socket.gethostname(),
        "pid": dead.pid,
        "since": "2026-01-01T00:00:00Z",
        "process_start": 1.0,
        "token": "stale",
    }
    lock.path.write_text(json.dumps(stale))
    said: list[str] = []
    me = lock.acquire(say=said.append)
    assert me.pid == os.getpid() and "stale lock" in said[0]
    # a reused PID (this very process, started at another time) is stale too
    lock.release()
    lock.path.write_text(json.dumps({**stale, "pid": os.getpid()}))
    lock.acquire()
    lock.release()


def test_waiting_driver_gets_the_lock_when_the_holder_lets_go(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from orchestrator.core.lock import StudyLock; "
            f"l = StudyLock({str(tmp_path)!r}); l.acquire(); print('held', flush=True); time.sleep(3); l.release()",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    start = time.time()
    with pytest.raises(StudyLocked):
        StudyLock(tmp_path).acquire()
    lock = StudyLock(tmp_path)
    lock.acquire(wait=True, poll=0.2)
    assert time.time() - start > 1.0
    lock.release()
    holder.wait(10)


def test_a_second_writer_of_a_folder_waits_and_leaves_the_first_writers_partial_folder_alone(tmp_path):
    # Two studies started together on one storage both made the random base teacher; the second removed the
    # first's partial folder mid-write (CI: FileNotFoundError in .tiny-2x32.partial-*). Now the second waits.
    from orchestrator.core.paths import exclusive, teacher_complete, writing

    final = tmp_path / "teachers" / "base" / "tiny-2x32"
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from orchestrator.core.paths import writing; "
            f"w = writing({str(final)!r}); p = w.__enter__(); print(p, flush=True); time.sleep(2); "
            "(p / 'config.json').write_text('{}'); (p / 'model.safetensors').write_text('w'); "
            "(p / 'tokenizer.json').write_text('{}'); w.__exit__(None, None, None)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    partial = first.stdout.readline().strip()
    start = time.time()
    with exclusive(final):  # as teacher_sources does: wait for the writer, then use its folder
        waited = time.time() - start
        complete = teacher_complete(final)
        if not complete:
            with writing(final):  # nested under the same hold: does not block itself
                pass
    assert first.wait(10) == 0
    assert waited > 1.0 and complete, (waited, complete)
    assert not Path(partial).exists() and (final / "model.safetensors").read_text() == "w"
    assert not list(final.parent.glob("*.partial-*"))


# --- cache manifests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cache(tiny_teacher, local_data, tmp_path_factory):
    data = load_task_data("exception", local_data, max_samples=20)
    storage = tmp_path_factory.mktemp("cache")
    request = CacheRequest(
        str(tiny_teacher), "exception", SignalSpec(logits=True), 48, "float16", shard_samples=8
    )
    report = get_or_build(request, data, 20, storage, use_ray=False)
    return request, data, storage, report


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda m: m.pop("shards"), "key 'shards' is missing"),
        (lambda m: m.update(bytes="many"), "bytes should be int"),
        (lambda m: m["shards"]["train"][0].update(dir="../../elsewhere"), "points outside the cache folder"),
        (lambda m: m["shards"]["test"][0].update(dir="/etc"), "points outside the cache folder"),
        (lambda m: m["shards"]["train"][0]["files"].update({"../x": {}}), "bad field name"),
        (lambda m: m["shards"]["validation"][0].pop("files"), "lacks 'files'"),
    ],
)
def test_damaged_manifest_means_rebuild_with_the_reason(small_cache, damage, reason):
    request, data, storage, report = small_cache
    mf = report.path / "manifest.json"
    manifest = json.loads(mf.read_text())
    damage(manifest)
    mf.write_text(json.dumps(manifest))
    with pytest.raises(CacheCorruptError, match=reason):
        verify(report.path, force=True)
    passes = teacher_passes(storage, {report.key})
    again = get_or_build(request, data, 20, storage, use_ray=False)
    assert again.built and reason in again.rebuilt_reason and again.key == report.key
    assert teacher_passes(storage, {report.key}) == passes + 1  # a rebuild is a pass made, and counted
    verify(again.path, force=True)


def test_shard_through_a_link_out_of_the_cache_is_invalid(small_cache, tmp_path):
    request, data, storage, report = small_cache
    manifest = json.loads((report.path / "manifest.json").read_text())
    (report.path / "escape").symlink_to(tmp_path)
    manifest["shards"]["test"][0]["dir"] = "escape"
    (report.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheCorruptError, match="through a link"):
        verify(report.path, force=True)
    assert get_or_build(request, data, 20, storage, use_ray=False).built


# --- start-up faults and status ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast_naming_the_uri(tmp_path, local_data):
    path = write_study(tmp_path / "t.yaml", local_data, storage=str(tmp_path / "runs"))
    uri = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    for extra in ([], ["--status"]):
        start = time.time()
        line = _one_line_error(_cli(str(path), *extra, env=env))
        assert time.time() - start < 15 and uri in line and "unreachable" in line
    assert not (tmp_path / "runs" / "t" / "driver.lock").exists()


def test_status_refuses_a_storage_that_holds_no_study(tmp_path, local_data):
    path = write_study(tmp_path / "s.yaml", local_data)
    line = _one_line_error(_cli(str(path), "--status", "--storage", str(tmp_path / "empty")))
    assert "no study 's'" in line and "--storage" in line
    assert not (tmp_path / "empty").exists()  # not created


def test_changed_data_changes_every_key(tmp_path, local_data):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(local_data, copy)
    spec = load_spec(write_study(tmp_path / "d.yaml", copy))
    before = build_plan(spec)
    moved = tmp_path / "moved"
    shutil.copytree(copy, moved)  # same content elsewhere: the same keys
    same = build_plan(load_spec(write_study(tmp_path / "d.yaml", moved)))
    assert [t.trial_key for t in same.trials] == [t.trial_key for t in before.trials]
    test = copy / "defect" / "test.jsonl"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:10]))  # a user edits their test file
    after = build_plan(spec)
    assert not {t.trial_key for t in after.trials} & {t.trial_key for t in before.trials}
    assert after.teachers[0].key != before.teachers[0].key
    assert all(t.tags["data_key"] == after.trials[0].settings["data"] for t in after.trials)


def test_status_tells_running_from_orphaned_counts_failures_once_and_flags_other_data(tmp_path, local_data):
    from mlflow.tracking import MlflowClient

    from orchestrator.core.paths import local_store_uri
    from orchestrator.study import status

    storage = tmp_path / "runs"
    spec = load_spec(write_study(tmp_path / "st.yaml", local_data, storage=str(storage)))
    (storage / "mlflow").mkdir(parents=True)
    client = MlflowClient(local_store_uri(storage))
    exp = client.create_experiment("st")
    ft, kd = (t.trial_key for t in build_plan(spec).trials)

    def run(key: str, status: str, **tags: str) -> None:
        r = client.create_run(exp, tags={"stage": "student", "trial_key": key, **tags})
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)

    plan = build_plan(spec)
    assert status(spec)["teachers_done"] == 0  # killed in the teacher stage: nothing to show but this
    t = client.create_run(exp, tags={"stage": "teacher_finetune", "trial_key": plan.teachers[0].key})
    client.set_terminated(t.info.run_id, "FINISHED")
    teachers = status(spec)
    assert (teachers["teachers"], teachers["teachers_done"]) == (len(plan.teachers), 1)
    assert (teachers["caches"], teachers["caches_done"]) == (len(plan.caches), 0)
    unit = plan.caches[0]  # a cache run is keyed by its content, not by the plan's unit: found by its slot
    tags = {"stage": "teacher_cache", "trial_key": "content-key", "teacher": unit.teacher, "task": unit.task}
    c = client.create_run(exp, tags={**tags, "labels": unit.labels})
    client.set_terminated(c.info.run_id, "FINISHED")
    assert status(spec)["caches_done"] == 1
    run(ft, "RUNNING")  # its driver died
    run(kd, "FAILED", error="first attempt")
    run(kd, "FAILED", error="the retry")
    run("an-old-key", "FINISHED", data_key="data-before-the-edit")  # made on data the user has since edited
    st = status(spec)
    assert (st["done"], st["running"], st["orphaned"], st["failed"]) == (0, 0, 1, 1)
    assert [f["error"] for f in st["failed_trials"]] == ["the retry"]
    assert st["stale_finished"] == st["stale_data"] == 1 and st["driver"] is None
    lock = StudyLock(storage / "st")
    time.sleep(2)  # the lock records its time to the second: the dead driver's run is clearly older
    lock.acquire()  # a live driver holds the study: its own RUNNING run is running
    try:
        run(ft, "RUNNING")
        st = status(spec)
        # the dead driver's run stays orphaned until the live driver marks it KILLED (it does once it is up)
        assert (st["running"], st["orphaned"]) == (1, 1) and f"PID {os.getpid()}" in st["driver"]
        assert "the driver running it redoes them" in "\n".join(status_lines(st))
    finally:
        lock.release()


def test_node_death_is_told_from_a_failing_trial():
    from ray.exceptions import RayActorError

    from orchestrator.sweep.node_loss import is_node_loss

    assert is_node_loss(RayActorError(None, "The actor died because its node has died. Node Id: 01ab"))
    assert not is_node_loss(RayActorError(None, "The actor died because its worker process has died."))
    assert not is_node_loss(ValueError("its node has died"))  # raised by trial code: a real failure


def test_the_node_loss_refund_is_installed_only_on_a_ray_it_knows():
    """The refund wraps a Ray internal (Trial.handle_error): another Ray version, or a Trial without it, is refused
    with the reason (the study then counts a lost node as plain Tune does) instead of patching blindly."""
    import ray
    from ray.tune.experiment.trial import Trial

    from orchestrator.sweep.node_loss import refund_node_loss, unsupported

    assert unsupported(ray.__version__, Trial) is None
    assert "outside the versions" in unsupported("2.10.0", Trial)
    assert "outside the versions" in unsupported("3.1.0", Trial)
    assert "handle_error" in unsupported(ray.__version__, type("Trial", (), {}))
    assert "_process_trial_failure" in unsupported(ray.__version__, Trial, type("TuneController", (), {}))
    assert refund_node_loss() and getattr(Trial.handle_error, "_refunds_node_loss", False)


def test_reports_other_than_a_second_node_loss_go_to_tunes_failure_handling():
    """Only a node-loss report for a trial already requeued (PENDING) is handled apart (tests/test_node_loss.py);
    a crash, or the first report of a running trial, reaches Tune's own failure handling, with Tune's real Trial
    objects and Ray's real errors."""
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment.trial import Trial

    from orchestrator.sweep.node_loss import ignore_stale_node_loss, refund_node_loss

    reached: list[tuple[str, str]] = []
    process = ignore_stale_node_loss(lambda self, trial, exc: reached.append((trial.status, str(exc)[:20])))
    lost = RayActorError(None, "The actor died because its node has died. Node Id: 01ab")
    crashed = RayActorError(None, "The actor died because its worker process has died.")
    queued, running = Trial("t", stub=True), Trial("t", stub=True)
    running.set_status(Trial.RUNNING)
    assert queued.status == Trial.PENDING
    process(None, queued, crashed)  # not a node loss: Tune decides
    process(None, running, lost)  # the first report: Tune refunds and retries it
    assert [status for status, _ in reached] == [Trial.PENDING, Trial.RUNNING]
    assert refund_node_loss() and getattr(
        TuneController._process_trial_failure, "_ignores_stale_node_loss", False
    )


LISTENERS = """
import sys
from pathlib import Path
from orchestrator.core.paths import remove_link
from orchestrator.core.process import start_ray  # as `python -m orchestrator.study` does: Ray's switch, then ray
_, link = start_ray(None, {}, Path(sys.argv[1]))  # Ray's temp folder under the test's storage, not /tmp/ray
import json, psutil, ray
try:
    seen = []
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            seen += [(p.name(), c.laddr.ip) for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    print(json.dumps(seen))
finally:
    ray.shutdown()
    remove_link(link)  # the short /tmp/kdr-* link to that folder, as the driver removes it
"""


def test_single_machine_ray_listens_on_loopback_only(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")
    }
    out = subprocess.run(
        [sys.executable, "-c", LISTENERS, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    listening = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(name.startswith(("gcs_server", "raylet")) for name, _ in listening), listening
    assert all(ip.removeprefix("::ffff:").startswith("127.") or ip == "::1" for _, ip in listening), listening
    assert not [p for p in Path("/tmp").glob("kdr-*") if os.readlink(p).startswith(str(tmp_path))]
