"""The study: YAML validation, the plan, the smoke study end to end, resume after a kill, failing trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, experiment_made, write_study
from mlflow.tracking import MlflowClient

from orchestrator.core.errors import StudyError
from orchestrator.design.study import build_plan, load_spec
from orchestrator.study import run_study, status

FACTOR_TAGS = {
    "task",
    "teacher",
    "student",
    "student_arch",
    "student_params",
    "method",
    "method_family",
    "seed",
    "trial_key",
    "stage",
}


def _study_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.study", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or os.environ.copy(),
    )


def _runs(uri: str, study: str, stage: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=5000)


# --- the study file ------------------------------------------------------------------------------------------


def test_unknown_names_list_the_valid_ones(tmp_path, local_data):
    bad = write_study(tmp_path / "bad.yaml", local_data, students=["roberta-tiny", "roberta-99m"])
    with pytest.raises(StudyError) as err:
        load_spec(bad)
    msg = str(err.value)
    assert "unknown student 'roberta-99m'" in msg and "bigru-7m" in msg and "bad.yaml:" in msg
    with pytest.raises(StudyError, match=r"m.yaml:\d+: methods: unknown method 'distill'; valid: .*'ckd'"):
        load_spec(write_study(tmp_path / "m.yaml", local_data, methods=["ft", "distill"]))
    with pytest.raises(StudyError, match=r"unknown task 'summarise'"):
        load_spec(write_study(tmp_path / "t.yaml", local_data, tasks=["summarise"]))


def test_bad_value_names_its_key_and_line(tmp_path, local_data):
    path = write_study(tmp_path / "v.yaml", local_data)
    text = path.read_text().replace("max_concurrent_trials: 2", "max_concurrent_trials: many")
    path.write_text(text + "\nbogus_key: 3\n")
    with pytest.raises(StudyError) as err:
        load_spec(path)
    msg = str(err.value)
    line_no = next(
        i for i, line in enumerate(text.splitlines(), 1) if line.startswith("max_concurrent_trials")
    )
    assert f"v.yaml:{line_no}: max_concurrent_trials:" in msg
    assert "bogus_key: unknown key" in msg
    with pytest.raises(
        StudyError, match=r"method_params.kd: unknown hyperparameter\(s\) \['temp'\]; valid: .*temperature"
    ):
        load_spec(write_study(tmp_path / "p.yaml", local_data, method_params={"kd": {"temp": 4}}))
    with pytest.raises(StudyError, match="unknown study 'smok'.*profiles: .*smoke"):
        load_spec("smok")


def test_plan_of_the_full_grid_needs_no_download():
    plan = build_plan(load_spec("full"))
    counts = plan.counts()
    # FT once per (student, task, seed); each KD method per teacher: 8 students x 3 tasks x 3 seeds x (1 + 4 x 2)
    assert counts["trials"] == 8 * 3 * 3 * (1 + 4 * 2) == 648
    assert counts["teacher_finetunes"] == 6 and counts["teacher_passes"] == 6
    assert counts["cache_bytes"] > 10**9 and counts["gpu_hours"] > 1
    ckd = next(c for c in plan.caches if c.teacher == "modernbert")
    # CKD's Gram numbers (kd_methods/ckd_cache.py), asked for by the method itself: a 2-layer student on ModernBERT
    assert (0, 11, 22) in next(d for d in ckd.derived if d.kind == "ckd").layer_sets


def test_plan_json_from_the_command_line():
    out = _study_cli("smoke", "--plan", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["trials"] == 3 * 2 * (1 + 4 * 2) == 54
    assert {"trials", "teacher_finetunes", "teacher_passes", "cache_bytes"} <= set(plan)
    assert plan["teacher_finetunes"] == plan["teacher_passes"] == 6


def test_teacher_train_override_is_validated_merged_and_keyed(tmp_path, local_data):
    teachers = [{"name": "tiny", "source": "random:roberta", "layers": 2, "hidden": 32}]
    base = load_spec(write_study(tmp_path / "a.yaml", local_data, teachers=teachers))
    over = [{**teachers[0], "train": {"lr": 0.0002, "epochs": 3}}]
    spec = load_spec(write_study(tmp_path / "b.yaml", local_data, teachers=over))
    merged = spec.teacher_train_for("tiny")
    assert (merged.lr, merged.epochs, merged.batch_size) == (0.0002, 3, spec.teacher_train.batch_size)
    assert base.teacher_train_for("tiny") == base.teacher_train
    # a teacher without an override keeps its unit key; a changed override re-fine-tunes
    key = build_plan(base).teachers[0].key
    assert build_plan(spec).teachers[0].key != key
    same = load_spec(write_study(tmp_path / "c.yaml", local_data, teachers=[{**teachers[0], "train": {}}]))
    assert build_plan(same).teachers[0].key == key
    with pytest.raises(StudyError, match=r"teachers.0.train.lr"):
        load_spec(
            write_study(tmp_path / "d.yaml", local_data, teachers=[{**teachers[0], "train": {"lr": -1}}])
        )
    with pytest.raises(StudyError, match=r"teachers.0.train.learning_rate: unknown key"):
        load_spec(
            write_study(
                tmp_path / "e.yaml", local_data, teachers=[{**teachers[0], "train": {"learning_rate": 1}}]
            )
        )


# --- the smoke study end to end ----------------------------------------------------------------------------


def test_smoke_study_records_every_trial_with_its_factors(smoke_study):
    uri = smoke_study["tracking_uri"]
    planned = json.loads(
        _study_cli("smoke", "--plan", "--json", "--storage", str(smoke_study["storage"])).stdout
    )
    students = _runs(uri, "smoke", "student")
    finished = [r for r in students if r.info.status == "FINISHED"]
    assert len(finished) == planned["trials"] == 54
    assert len({r.data.tags["trial_key"] for r in finished}) == len(finished)
    for r in finished:
        assert FACTOR_TAGS <= set(r.data.tags), r.data.tags
        assert r.data.tags["student_arch"] in ("roberta", "bigru")
        assert int(r.data.tags["student_params"]) > 0
        assert {"test_accuracy", "train_seconds", "teacher_seconds", "inference_samples_per_s"} <= set(
            r.data.metrics
        )
    assert Counter(r.data.tags["method_family"] for r in finished) == {"none": 6, "logit": 24, "feature": 24}
    assert {r.data.tags["task"] for r in finished} == {"defect", "clone", "exception"}
    assert {r.data.tags["teacher"] for r in finished} == {"none", "tiny-roberta", "minilm"}
    exc = next(r for r in finished if r.data.tags["task"] == "exception")
    assert {"test_top3_accuracy", "test_macro_f1"} <= set(exc.data.metrics)
    assert "val_accuracy" in exc.data.metrics and "lr" in exc.data.params
    client = MlflowClient(uri)
    arts = {a.path for a in client.list_artifacts(exc.info.run_id)}
    assert {"checkpoint", "predictions"} <= arts
    # exactly one teacher pass (cache run) per (teacher, task), each of which built its cache once
    caches = _runs(uri, "smoke", "teacher_cache")
    assert sorted((r.data.tags["teacher"], r.data.tags["task"]) for r in caches) == sorted(
        (t, k) for t in ("tiny-roberta", "minilm") for k in ("defect", "clone", "exception")
    )
    assert all(r.data.metrics["teacher_passes"] == 1 for r in caches)
    # PKD's targets checked per cache (cache/spread.py): a console warning for each cache with a constant layer
    for r in caches:
        cos = {k: v for k, v in r.data.metrics.items() if k.startswith("cls_pairwise_cos.")}
        assert cos and all(-1.0 <= v <= 1.0 + 1e-6 for v in cos.values()), r.data.metrics
        where = f"teacher cache {r.data.tags['teacher']}/{r.data.tags['task']}:"
        warned = f"warning: {where}" in smoke_study["stdout"]
        assert warned == (max(cos.values()) >= 0.999), (where, cos)
    teachers = _runs(uri, "smoke", "teacher_finetune")
    assert len(teachers) == 6
    # every scored run carries its headline score and its test split's majority baseline, in one column each
    for r in [*teachers, *finished, *caches]:
        assert {"test_score", "test_majority_baseline"} <= set(r.data.metrics), r.data.tags
    clone = next(r for r in teachers if r.data.tags["teacher"] == "minilm" and r.data.tags["task"] == "clone")
    assert clone.data.metrics["test_score"] == clone.data.metrics["test_f1"]
    # the smoke study has something to find: a teacher well above a constant prediction
    assert clone.data.metrics["test_score"] >= clone.data.metrics["test_majority_baseline"] + 0.10
    assert clone.data.params["lr"] == "0.0002" and clone.data.params["train_override"] != "none"
    parent = _runs(uri, "smoke", "study")[0]
    assert parent.data.metrics["teacher_passes"] == 6
    # KD trials read the cache: their teacher time is a sliver of their training time
    kd = [r for r in finished if r.data.tags["method"] == "kd"]
    assert all(r.data.metrics["teacher_seconds"] < 0.5 * r.data.metrics["train_seconds"] for r in kd)
    assert "MLflow UI: mlflow server --backend-store-uri sqlite:///" in smoke_study["stdout"]


def test_rerunning_a_finished_study_runs_nothing_again(smoke_study):
    env = {**os.environ, "MLFLOW_TRACKING_URI": smoke_study["tracking_uri"]}
    st = json.loads(
        _study_cli("smoke", "--status", "--json", "--storage", str(smoke_study["storage"]), env=env).stdout
    )
    assert st["done"] == st["planned"] == 54 and st["remaining"] == 0 and st["failed"] == 0
    before = len(_runs(smoke_study["tracking_uri"], "smoke", "student"))
    out = _study_cli("smoke", "--storage", str(smoke_study["storage"]), env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # answered from the store (sweep/fastpath.py): no MLflow server, no Ray, nothing run
    assert "nothing left to run: 54/54 trials FINISHED" in out.stdout
    assert "MLflow server (started" not in out.stdout and "tokenizers" not in out.stdout
    assert len(_runs(smoke_study["tracking_uri"], "smoke", "student")) == before
    assert len(_runs(smoke_study["tracking_uri"], "smoke", "teacher_cache")) == 6
    assert len(_runs(smoke_study["tracking_uri"], "smoke", "teacher_finetune")) == 6


# --- resume and failure ------------------------------------------------------------------------------------


def _kill_tree(pid: int) -> None:
    """SIGKILL a driver we started and every process it started (its Ray processes), by PID."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = [proc, *proc.children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def test_killed_driver_resumes_with_every_trial_exactly_once(tmp_path, local_data):
    # trials long enough (a few seconds each) that the kill lands mid-study
    path = write_study(
        tmp_path / "resume.yaml",
        local_data,
        students=["roberta-tiny", "bigru-tiny"],
        seeds=[0, 1],
        max_concurrent_trials=1,
        max_samples=96,
        student_train={"epochs": 4, "batch_size": 8, "lr": 0.001, "max_length": 64},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "orchestrator.study", str(path), "--storage", str(tmp_path / "runs")]
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 400
        client = None
        while time.time() < deadline:
            time.sleep(0.3)
            assert driver.poll() is None, (
                "the driver ended before it could be killed:\n" + log.read_text()[-3000:]
            )
            if not experiment_made(uri, "resume"):
                continue
            client = client or MlflowClient(uri)
            exp = client.get_experiment_by_name("resume")
            flt = "tags.stage = 'student' and attributes.status = 'FINISHED'"
            if len(client.search_runs([exp.experiment_id], flt, max_results=50)) >= 2:
                break
    finally:
        _kill_tree(driver.pid)
    killed_at = len([r for r in _runs(uri, "resume", "student") if r.info.status == "FINISHED"])
    assert 2 <= killed_at < 8

    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = _runs(uri, "resume", "student")
    finished = Counter(r.data.tags["trial_key"] for r in runs if r.info.status == "FINISHED")
    assert len(finished) == 2 * 2 * 2 == 8 and set(finished.values()) == {1}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert f"{8 - killed_at} to run" in out.stdout
    assert "taking over the stale lock" in out.stdout  # the killed driver's lock (its PID is dead)


def test_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, local_data, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    path = write_study(
        tmp_path / "failing.yaml",
        local_data,
        methods=["ft", "kd", "dist"],
        method_params={"kd": {"temperature": float("nan")}},
        storage=str(tmp_path / "runs"),
    )
    outcome = run_study(load_spec(path))
    assert outcome.planned == 3 and outcome.finished == 2 and not outcome.complete
    runs = _runs(uri, "failing", "student")
    failed = [r for r in runs if r.info.status == "FAILED"]
    # one run: the retry Tune makes (max_failures: 1) stops before training, as the same configuration and seed
    # would diverge again (sweep/trial.earlier_runs)
    assert len(failed) == 1
    errors = [
        f.read_text() for f in (tmp_path / "runs").rglob("error.txt")
    ]  # Tune's record of the last attempt
    assert errors and all("not retried: this trial diverged in run" in e for e in errors)
    assert all(r.data.tags["method"] == "kd" and "NonFiniteLossError" in r.data.tags["error"] for r in failed)
    st = status(load_spec(path))
    assert st["failed"] == 1 and st["done"] == 2 and st["remaining"] == 1
    assert "loss became nan" in st["failed_trials"][0]["error"]


def test_notebooks_answer_the_questions_from_the_smoke_study(smoke_study, tmp_path):
    import nbformat

    from orchestrator.analysis import NOTEBOOKS, load_runs, run_notebooks

    df = load_runs("smoke", smoke_study["tracking_uri"])
    assert (df["stage"] == "student").sum() == 54
    written = run_notebooks(
        tmp_path / "executed", "smoke", smoke_study["tracking_uri"], figures_dir=tmp_path / "figures"
    )
    assert len(written) == len(NOTEBOOKS)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
        assert not errors, f"{path.name}: {errors[:1]}"
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
    png = tmp_path / "figures" / "figure2.png"
    assert png.exists() and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_trial_params_are_the_effective_method_hyperparameters(tmp_path):
    """Issue 24: a trial's params named only the method_params a study set, so DIST's defaults (beta, gamma, tau)
    were nowhere in MLflow; a trial's params now hold every hyperparameter it ran with."""
    from kd_methods import get_method

    spec = load_spec("smoke").model_copy(
        update={"methods": ["ft", "dist"], "method_params": {"dist": {"beta": 2.0}}, "storage": str(tmp_path)}
    )
    trials = {t.method: t for t in build_plan(spec).trials}
    dist = trials["dist"].params
    assert dist["method.beta"] == 2.0  # the study's value wins
    assert {f"method.{k}" for k in get_method("dist").defaults} <= set(dist)
    assert dist["method.gamma"] == get_method("dist").defaults["gamma"]
