"""The completion study end to end: ``python -m orchestrator.study completion-smoke`` as a new user runs it, in an
empty folder with the default data and storage (real Ray, real MLflow, the offline proxy built under the storage),
then a classification study's data resolved in the same folder; resume, --status, --plan --calibrate, a failing
trial, the notebook; plus the spec and plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.core.errors import StudyError
from orchestrator.design.study import PROFILES_DIR, build_plan, load_spec
from orchestrator.sweep.driver import run_study, status

ROOT = Path(__file__).resolve().parent.parent
MODES = ("cached", "cached-topk", "online", "in_training", "none")


def _cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["KDSTUDY_STATE_DIR"] = str(cwd.parent / "state")  # the study index, documented as outside the storage
    cmd = [sys.executable, "-m", "orchestrator.study", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _study_file(folder: Path, data: Path, storage: Path, **changes: object) -> Path:
    raw = yaml.safe_load((PROFILES_DIR / "completion-smoke.yaml").read_text())
    raw.update(data=str(data), storage=str(storage), **changes)
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The profile as it ships, in an empty folder: default data (built under the storage) and storage (runs)."""
    cwd = tmp_path_factory.mktemp("completion-smoke") / "work"
    cwd.mkdir()
    first = _cli("completion-smoke", cwd=cwd)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    storage = cwd / "runs"
    uri = f"sqlite:///{storage / 'mlflow' / 'mlflow.db'}"
    data = storage / "data" / "local" / "completion"
    return {"cwd": cwd, "storage": storage, "data": data, "uri": uri, "log": first.stdout + first.stderr}


def _runs(uri: str, stage: str = "student") -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("completion-smoke")
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=1000)


def test_every_teacher_mode_finishes_with_es_em_and_the_contract_tags(smoke):
    runs = _runs(smoke["uri"])
    assert len(runs) == 10 and all(r.info.status == "FINISHED" for r in runs)
    by_mode = {m: [r for r in runs if r.data.tags["teacher_mode"] == m] for m in MODES}
    assert all(len(v) == 2 for v in by_mode.values()), {m: len(v) for m, v in by_mode.items()}
    client = MlflowClient(smoke["uri"])
    for r in runs:
        t, m = r.data.tags, r.data.metrics
        assert t["task"] == "completion" and t["codexglue_version"] == "local-proxy"
        assert (
            t["student_init"] == "teacher_layers"
            and t["stage"] == "student"
            and t["study"] == "completion-smoke"
        )
        assert t["method"] == ("lm_only" if t["teacher_mode"] == "none" else "distil")
        assert r.info.run_name.startswith(f"{m['test_score']:.1f} {t['method']} ")  # score first (issue 24)
        assert {"teacher", "student", "seed", "trial_key"} <= set(t)
        assert 0 <= m["test_es"] <= 100 and 0 <= m["test_em"] <= 100 and m["test_score"] == m["test_es"]
        assert m["student_params"] > 0 and m["model_mb"] > 0 and m["inference_samples_per_s"] > 0
        assert m["generated_tokens_per_s"] > 0 and m["test_lines"] == 12
        history = client.get_metric_history(r.info.run_id, "val_ppl")
        assert sorted(h.step for h in history) == [1, 2]  # one validation perplexity per epoch
        assert m["best_val_ppl"] == pytest.approx(min(h.value for h in history))
    deeper = [r for r in runs if r.data.tags["student"] == "gpt2-2l"]
    shallower = [r for r in runs if r.data.tags["student"] == "gpt2-1l"]
    assert min(r.data.metrics["student_params"] for r in deeper) > max(
        r.data.metrics["student_params"] for r in shallower
    )
    for r in by_mode["in_training"]:  # the in-training teacher learnt too, and is scored
        assert {"teacher_val_ppl", "teacher_test_es", "teacher_test_em"} <= set(r.data.metrics)
    for r in by_mode["cached-topk"]:
        mass = [v for k, v in r.data.metrics.items() if k.startswith("topk_mass_kept_T")]
        assert r.data.tags["approximate"] == "true" and mass and all(0 < v <= 1 for v in mass)


def test_the_exact_cache_is_built_once_and_teaches_what_the_online_teacher_does(smoke):
    assert (
        "teacher passes made by this study: 2" in smoke["log"]
    )  # one exact + one top-k, for 4 cached trials
    runs = _runs(smoke["uri"])
    keys = {r.data.tags.get("teacher_cache") for r in runs if r.data.tags["teacher_mode"] == "cached"}
    assert len(keys) == 1 and None not in keys  # both students read the same cache
    for student in ("gpt2-1l", "gpt2-2l"):
        ppl = {
            r.data.tags["teacher_mode"]: r.data.metrics["best_val_ppl"]
            for r in runs
            if r.data.tags["student"] == student and r.data.tags["teacher_mode"] in ("cached", "online")
        }
        # The fp16 hidden-state cache rebuilds the online teacher's distribution (KL ~ 1e-8): same training.
        assert ppl["cached"] == pytest.approx(ppl["online"], rel=1e-3)
    teacher = _runs(smoke["uri"], "teacher")
    assert len(teacher) == 1 and "test_es" in teacher[0].data.metrics


def test_only_the_storage_is_written_and_a_classification_study_finds_its_data_next(smoke, monkeypatch):
    """completion-smoke then smoke / smoke-tune in the same folder: the completion proxy went under the storage
    (not ./data/local), so the classification studies resolve their default data there too and build what it
    lacks, instead of taking a folder of completion data as their own."""
    from orchestrator.design.data_source import resolve_spec_data, will_build
    from orchestrator.design.validate import check_study

    assert sorted(p.name for p in smoke["cwd"].iterdir()) == ["runs"]
    assert (smoke["data"] / "train.txt").is_file() and "building the offline completion proxy" in smoke["log"]
    assert not list(
        (smoke["storage"] / "completion-smoke" / "scratch").iterdir()
    )  # every trial's scratch removed
    assert list((smoke["storage"] / "ray").iterdir())  # Ray's temp folder under the storage
    monkeypatch.chdir(smoke["cwd"])
    for profile in ("smoke", "smoke-tune"):
        spec = resolve_spec_data(load_spec(profile))
        assert spec.data == str(smoke["storage"] / "data" / "local") and will_build(spec)
        check_study(spec)  # no "data/local lacks defect/train.jsonl": the default data is built first
        out = _cli(profile, "--plan", cwd=smoke["cwd"])
        assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in smoke["cwd"].iterdir()) == ["runs"]


def test_status_and_plan_calibrate_answer_for_a_completion_study(smoke):
    st = _cli("completion-smoke", "--status", "--json", cwd=smoke["cwd"])
    assert st.returncode == 0, st.stderr[-2000:]
    body = json.loads(st.stdout)
    assert (body["planned"], body["done"], body["running"], body["orphaned"], body["driver"]) == (
        10,
        10,
        0,
        0,
        None,
    )
    assert body["task"] == "completion" and body["stale_finished"] == 0
    out = _cli("completion-smoke", "--plan", "--calibrate", "--json", cwd=smoke["cwd"])
    assert out.returncode == 0, out.stderr[-3000:]
    plan = json.loads(out.stdout)
    assert plan["estimate"] == "calibrated" and plan["calibration"]["uncovered"] == 0
    calibration = json.loads((smoke["storage"] / "completion-smoke" / "calibration.json").read_text())
    # one unit per distinct (student, teacher shape, mode, block, batch): 2 students x 5 modes
    assert len(calibration["units"]) == 10 and all(u["step_s"] > 0 for u in calibration["units"].values())
    assert plan["estimate_hours"]["trial_hours"] > 0 and plan["progress"]["done"] == 10
    assert not list(
        (smoke["storage"] / "completion-smoke" / "scratch").iterdir()
    )  # its random teachers removed


def test_rerun_skips_finished_trials_and_status_says_done(smoke, monkeypatch, capsys):
    # In this process: with nothing left to run the driver starts neither Ray nor a teacher pass.
    monkeypatch.chdir(smoke["cwd"])
    spec = load_spec("completion-smoke")
    outcome = run_study(spec)
    assert (outcome.planned, outcome.finished, outcome.failed) == (10, 10, [])
    assert "nothing left to run: 10/10 trials FINISHED" in capsys.readouterr().out
    assert len(_runs(smoke["uri"])) == 10  # nothing recorded twice
    st = status(spec)
    assert (st["planned"], st["done"], st["remaining"], st["failed"]) == (10, 10, 0, 0)


def test_a_failing_trial_is_recorded_failed_and_the_study_goes_on(smoke, tmp_path, capsys):
    # Same data, store and teacher; a pretrained student from a folder without weights (its config passes the
    # check before the start) fails in its trial, the other finishes.
    missing = tmp_path / "no-such-checkpoint"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_layer": 1}))
    path = _study_file(
        tmp_path, smoke["data"], smoke["storage"], student_init=["teacher_layers", f"pretrained:{missing}"],
        students=["gpt2-1l"], teacher_modes=["online"], methods=["distil"],
    )  # fmt: skip
    outcome = run_study(load_spec(path))
    assert not outcome.complete and (outcome.planned, outcome.finished, len(outcome.failed)) == (2, 1, 1)
    out = capsys.readouterr().out
    assert "1 already finished, 1 to run" in out  # the online 1-layer trial is the smoke's
    assert "teacher tiny-gpt2: exists" in out
    st = status(load_spec(path))
    assert (st["planned"], st["done"], st["failed"]) == (2, 1, 1)
    assert "tokenizer" in st["failed_trials"][0]["error"]  # the folder holds a config only
    runs = _runs(smoke["uri"])
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "tokenizer" in failed[0].data.tags["error"]
    assert failed[0].data.tags["student_init"] == f"pretrained:{missing}"
    assert (
        len([r for r in runs if r.info.status == "FINISHED"]) == 10
    )  # the online 1-layer trial was already done


def test_the_notebooks_command_answers_a_completion_study_with_its_own_notebook(smoke, tmp_path):
    # as the study's closing lines tell a user to; the classification notebooks (RQ1-RQ4, efficiency, behaviour,
    # Figure 2) have no rows for a completion study, and three of them stopped the command on an assertion
    import nbformat

    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.analysis", "notebooks", "--study", "completion-smoke"]
        + ["--storage", str(smoke["storage"]), "--out", str(tmp_path)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.split() == ["executed", str(tmp_path / "08_completion.ipynb")], out.stdout
    nb = nbformat.read(tmp_path / "08_completion.ipynb", as_version=4)
    text = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "11 finished completion runs" in text  # 10 students and the teacher's own scores
    assert "teacher" in text and "gpt2-2l" in text and "frozen_minus_in_training" in text
    assert (tmp_path / "figures" / "completion_size.png").is_file()
    from orchestrator.analysis import completion as C

    runs = C.load_completion_runs("completion-smoke", smoke["uri"])
    table = C.poster_table(runs, poster=True)
    assert list(table.index) == ["teacher", "gpt2-2l", "gpt2-1l"]
    assert (
        table.loc["teacher", "poster_es"] == 39.1
        and table.loc["gpt2-2l", "poster_params_m"] != table.loc["gpt2-2l", "poster_params_m"]
    )  # NaN: no poster row for 2 layers
    assert table.loc["gpt2-2l", "params_m"] > table.loc["gpt2-1l", "params_m"]
    modes = C.compare_modes(runs, "test_es")
    assert {"cached", "cached-topk", "online", "in_training", "none", "frozen_minus_in_training"} <= set(
        modes.columns
    )


# -- spec and plan (no Ray) -----------------------------------------------------------------------------------------


def test_profiles_are_completion_studies_and_plan_without_weights():
    for name in ("completion-smoke", "completion-local", "completion-full"):
        spec = load_spec(name)
        assert spec.kind == "completion"
        plan = build_plan(spec)
        assert plan.trials and plan.totals["wall_hours"] > 0
        assert len({t.trial_key for t in plan.trials}) == len(plan.trials)
    assert load_spec("smoke").kind == "classification"
    full = build_plan(load_spec("completion-full"))
    assert {t.student for t in full.trials} == {f"gpt2-{n}l" for n in (4, 6, 8, 10, 12)}
    assert {t.teacher_mode for t in full.trials} == {"cached", "in_training", "none"}


def test_in_training_with_a_cache_is_refused_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    raw = yaml.safe_load((PROFILES_DIR / "completion-smoke.yaml").read_text())
    raw["teacher_modes"] = ["cached", "in_training+cached"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"bad.yaml:\d+: teacher_modes: teacher mode 'in_training\+cached'"):
        load_spec(path)
    out = _cli(str(path), "--plan")
    assert out.returncode == 2 and "in_training cannot use a teacher cache" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_student_lists_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    raw = yaml.safe_load((PROFILES_DIR / "completion-smoke.yaml").read_text())
    raw["students"] = ["gpt2-3l"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"unknown student 'gpt2-3l'; valid: \['gpt2-1l'"):
        load_spec(path)


def test_plan_keys_lm_only_once_and_a_pretrained_init_fixes_the_depth(tmp_path):
    from orchestrator.design.completion_spec import CompletionStudySpec

    ckpt = tmp_path / "gpt2-code"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 32}))
    raw = yaml.safe_load((PROFILES_DIR / "completion-smoke.yaml").read_text())
    raw.update(
        data=str(tmp_path / "absent"), student_init=["teacher_layers", f"pretrained:{ckpt}"], seeds=[0, 1]
    )
    plan = build_plan(CompletionStudySpec.model_validate(raw))
    pretrained = [t for t in plan.trials if t.student_init.startswith("pretrained:")]
    # 4 modes + lm_only, 2 seeds: once (as gpt2-2l, the checkpoint's depth), not once per student name
    assert len(pretrained) == 10 and {t.student for t in pretrained} == {"gpt2-2l"}
    layered = [t for t in plan.trials if t.student_init == "teacher_layers"]
    assert len(layered) == 2 * 2 * 5  # students x seeds x (4 modes + lm_only)
    assert sum(t.method == "lm_only" for t in layered) == 4 and all(
        t.teacher_mode == "none" for t in layered if t.method == "lm_only"
    )
    again = build_plan(CompletionStudySpec.model_validate(raw))
    assert [t.trial_key for t in again.trials] == [t.trial_key for t in plan.trials]  # stable keys
    raw["student_train"] = {**raw["student_train"], "lr": 0.001}
    changed = build_plan(CompletionStudySpec.model_validate(raw))
    assert not {t.trial_key for t in changed.trials} & {t.trial_key for t in plan.trials}


def test_freeze_pos_embs_keys_its_trials_and_refuses_a_random_student(tmp_path):
    """Off (the default), the keys are those of a study written before the setting existed; on, every trial is a
    new one and its LM training freezes the positions; a random student cannot freeze random positions."""
    from orchestrator.design.completion_spec import CompletionStudySpec

    raw = yaml.safe_load((PROFILES_DIR / "completion-smoke.yaml").read_text())
    raw.update(data=str(tmp_path / "absent"), student_init=["teacher_layers"])
    keys = {t.trial_key for t in build_plan(CompletionStudySpec.model_validate(raw)).trials}
    off = build_plan(CompletionStudySpec.model_validate({**raw, "freeze_pos_embs": False})).trials
    assert {t.trial_key for t in off} == keys
    on = build_plan(CompletionStudySpec.model_validate({**raw, "freeze_pos_embs": True})).trials
    assert not {t.trial_key for t in on} & keys and len(on) == len(keys)
    assert all(t.work.trial.train.freeze_pos_embs and t.params["freeze_pos_embs"] is True for t in on)
    assert not any(t.work.trial.train.freeze_pos_embs for t in off)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**raw, "student_init": ["random"], "freeze_pos_embs": True}))
    with pytest.raises(
        StudyError, match="freeze_pos_embs: true would keep a random student's random position"
    ):
        load_spec(path)


def test_a_teacher_that_exists_gets_its_run_in_a_study_that_has_none(smoke, tmp_path, capsys):
    """The teacher row of a study's table is its ``stage=teacher`` run. A teacher folder that is already there (a
    driver killed between saving and recording it, or, as here, another study of the same storage built it) is
    scored for the study that has no run of it, once."""
    path = _study_file(
        tmp_path, smoke["data"], smoke["storage"], name="completion-other", students=["gpt2-1l"],
        teacher_modes=["online"], methods=["lm_only"], seeds=[0],
    )  # fmt: skip
    assert run_study(load_spec(path)).complete
    assert "teacher tiny-gpt2: exists" in capsys.readouterr().out
    client = MlflowClient(smoke["uri"])
    exp = client.get_experiment_by_name("completion-other")
    [run] = client.search_runs([exp.experiment_id], "tags.stage = 'teacher'")
    assert run.info.status == "FINISHED" and {"test_es", "test_em"} <= set(run.data.metrics)
    [first] = _runs(smoke["uri"], "teacher")
    assert run.data.tags["teacher_key"] == first.data.tags["teacher_key"]  # the same teacher, scored alike
    assert run.data.metrics["test_es"] == pytest.approx(first.data.metrics["test_es"])
    # its build is the first study's spending, counted there once (it took no time here)
    assert "build_seconds" not in run.data.metrics and first.data.metrics["build_seconds"] > 0
    [parent] = _runs(smoke["uri"], "study")
    assert parent.data.metrics["spent_teacher_hours"] > 0  # the completion teacher's build counts
    assert parent.data.metrics["teacher_passes"] == 2  # the exact and the top-k cache, recounted from the log
    path.write_text(path.read_text().replace("seeds:\n- 0", "seeds:\n- 1"))
    assert run_study(load_spec(path)).complete
    assert len(client.search_runs([exp.experiment_id], "tags.stage = 'teacher'")) == 1  # not twice


def test_a_study_of_the_other_kind_cannot_share_the_name(smoke):
    """One experiment per study name: a classification study named as a completion study of the same store would
    have its runs read as one study (the analysis mixed them); the driver refuses before its first stage."""
    from orchestrator.sweep.context import parent_run

    client = MlflowClient(smoke["uri"])
    exp = client.get_experiment_by_name("completion-smoke")
    other = load_spec("smoke").model_copy(update={"name": "completion-smoke"})
    with pytest.raises(
        StudyError, match="already holds a completion study of that name; a classification study"
    ):
        parent_run(client, exp.experiment_id, other)
    [parent] = _runs(smoke["uri"], "study")
    assert (
        parent_run(client, exp.experiment_id, load_spec("completion-smoke")) == parent.info.run_id
    )  # same kind
    client.set_terminated(parent.info.run_id, parent.info.status)  # as it was, for the tests after this one
