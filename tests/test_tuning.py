"""The tuning stage: the tuning: section, the plan's counts, and smoke-tune end to end, killed during tuning and
resumed (every cell tuned once with its budget, final runs tuned_from the cell's best, no duplicates)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, experiment_made, write_study
from mlflow.tracking import MlflowClient
from test_study import _kill_tree

from orchestrator.core import tracking
from orchestrator.core.errors import StudyError
from orchestrator.design.plan import student_train
from orchestrator.design.study import build_plan, load_spec

TUNING = {"samples": 3, "max_epochs": 2, "grace_period": 1}


# --- the tuning: section --------------------------------------------------------------------------------------


def test_tuning_none_keeps_the_fixed_recipe(tmp_path, local_data):
    spec = load_spec(write_study(tmp_path / "n.yaml", local_data, tuning="none"))
    assert spec.tuning is None and build_plan(spec).counts()["tuning"] is None
    assert load_spec(write_study(tmp_path / "d.yaml", local_data)).tuning is None


def test_bad_tuning_sections_name_the_key(tmp_path, local_data):
    def bad(name: str, tuning: object) -> str:
        with pytest.raises(StudyError) as err:
            load_spec(write_study(tmp_path / f"{name}.yaml", local_data, tuning=tuning))
        return str(err.value)

    msg = bad("m", {**TUNING, "space": {"distill": {"lr": {"type": "uniform", "low": 0, "high": 1}}}})
    assert "tuning: " in msg and "unknown method 'distill'" in msg and "'ckd'" in msg
    msg = bad("p", {**TUNING, "space": {"kd": {"temp": {"type": "choice", "values": [2.0]}}}})
    assert "space.kd: unknown hyperparameter(s) ['temp']" in msg and "temperature" in msg and "lr" in msg
    assert "low (0.001) must be below high (1e-05)" in bad(
        "r", {**TUNING, "space": {"ft": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-5}}}}
    )
    assert "tuning.searcher" in bad("s", {**TUNING, "searcher": "grid"})
    assert "tuning.samples" in bad("n", {**TUNING, "samples": 0})
    assert "tuning.bogus: unknown key" in bad("k", {**TUNING, "bogus": 1})
    assert "tuning is 'none' or a mapping" in bad("x", "yes")
    assert "grace_period (3) must be <= max_epochs (2)" in bad("g", {**TUNING, "grace_period": 3})
    with pytest.raises(StudyError, match="teacher_mode: cached"):
        load_spec(write_study(tmp_path / "o.yaml", local_data, tuning=TUNING, teacher_mode="online"))
    assert "tuning.trial_seed 0 is one of the study's seeds" in bad("t", {**TUNING, "trial_seed": 0})
    big = {"ckd": {"batch_size": {"type": "choice", "values": [16, 64]}}}
    with pytest.raises(StudyError, match="tuning.space.ckd.batch_size reaches 64; ckd caps its batch at 16"):
        load_spec(
            write_study(tmp_path / "b.yaml", local_data, tuning={**TUNING, "space": big}, methods=["ckd"])
        )


def test_tuning_trials_use_a_seed_no_final_uses_and_a_cell_is_its_own_search(tmp_path, local_data):
    from orchestrator.sweep.tuning_stage import _base_trial, _searcher

    spec = load_spec(write_study(tmp_path / "s.yaml", local_data, tuning=TUNING))
    plan = build_plan(spec)
    # a final seed would replay its cell's winning tuning trial (same init and batch order)
    base = _base_trial(spec, plan.cells[0])
    assert base.seed == base.work.seed == 1_000_000 not in spec.seeds
    # a constant: adding a final seed keeps every cell's search (and adds final runs)
    more = build_plan(load_spec(write_study(tmp_path / "more.yaml", local_data, tuning=TUNING, seeds=[0, 1])))
    assert sorted({c.cell for c in more.cells}) == sorted({c.cell for c in plan.cells})
    assert base.tags["seed"] == str(base.seed) and base.params["seed"] == base.seed
    # another method's space override leaves FT's search (its cells) alone; a changed range of its own does not
    kd_space = {"kd": {"temperature": {"type": "choice", "values": [2.0, 4.0]}}}
    other = build_plan(
        load_spec(write_study(tmp_path / "k.yaml", local_data, tuning={**TUNING, "space": kd_space}))
    )
    cells = lambda p, m: sorted({c.cell for c in p.cells if c.method == m})  # noqa: E731
    assert cells(other, "ft") == cells(plan, "ft") and cells(other, "kd") != cells(plan, "kd")
    moved = build_plan(
        load_spec(write_study(tmp_path / "m.yaml", local_data, tuning={**TUNING, "trial_seed": 7}))
    )
    assert cells(moved, "ft") != cells(plan, "ft")
    # Tune gives max_concurrent_trials to a Searcher only: the random generator carries its own limit
    rand = load_spec(write_study(tmp_path / "r.yaml", local_data, tuning={**TUNING, "searcher": "random"}))
    assert _searcher(rand, plan.cells[0].cell, ["lr"], [], 0).max_concurrent == rand.max_concurrent_trials


def test_a_diverged_tuning_sample_counts_against_the_budget(tmp_path, local_data):
    from orchestrator.sweep.tuning import diverged_runs, tuning_status

    spec = load_spec(write_study(tmp_path / "d.yaml", local_data, tuning=TUNING))
    plan = build_plan(spec)
    cell = plan.cells[0].cell
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("d")
    runs = [
        ("FINISHED", "", "a"),
        ("FAILED", "NonFiniteLossError: loss became nan at epoch 2", "b"),
        ("FAILED", "NonFiniteLossError: loss became nan at epoch 2", "b"),  # Tune's retry of the same sample
        ("FAILED", "RayActorError: the worker died", "c"),
    ]  # a fault, redone: not a sample spent
    for status, error, key in runs:
        run = client.create_run(exp, tags={"stage": "tune", "cell": cell, "trial_key": key, "error": error})
        client.set_terminated(run.info.run_id, status)
    assert {c: [r.data.tags["trial_key"] for r in rs] for c, rs in diverged_runs(client, exp).items()} == {
        cell: ["b"]
    }
    assert tuning_status(plan, client, exp)["trials_finished"] == 2  # one finished, one diverged


def test_space_defaults_and_overrides(tmp_path, local_data):
    space = {"kd": {"temperature": {"type": "choice", "values": [2.0, 4.0]}}}
    spec = load_spec(write_study(tmp_path / "o.yaml", local_data, tuning={**TUNING, "space": space}))
    kd = spec.tuning.space_for("kd")
    assert kd["temperature"].values == [2.0, 4.0] and kd["lr"].type == "loguniform"
    assert set(spec.tuning.space_for("ft")) == {"lr"}
    assert {"alpha", "beta", "gamma", "temperature", "lr"} == set(spec.tuning.space_for("ckd"))


def test_authors_recipe_presets_each_method(tmp_path, local_data):
    spec = load_spec(
        write_study(
            tmp_path / "a.yaml", local_data, recipe="authors", methods=["ft", "kd", "dist", "pkd", "ckd"]
        )
    )
    assert student_train(spec, "kd")["lr"] == 3e-4 and spec.params_for("kd")["temperature"] == 10.0
    # DIST: their README run (lr 1e-4, --temp 10; --temp has no default)
    assert student_train(spec, "dist")["lr"] == 1e-4 and spec.params_for("dist") == {"temperature": 10.0}
    assert student_train(spec, "pkd")["lr"] == 1e-4 and student_train(spec, "ft")["lr"] == 3e-4
    ckd = student_train(spec, "ckd")
    assert (
        ckd["lr"] == 3e-5
        and ckd["batch_size"] == 16
        and spec.params_for("ckd") == {"beta": 1.0, "gamma": 1.0}
    )
    assert ckd["epochs"] == spec.student_train.epochs  # not given by the authors: student_train


# --- the plan -------------------------------------------------------------------------------------------------


def test_plan_counts_tuning_and_final_trials_separately():
    c = build_plan(load_spec("smoke-tune")).counts()
    assert c["tuning"]["cells"] == 5 and c["tuning"]["trials"] == 5 * 3 and c["trials"] == 5 * 2
    for name, cells, samples in (("local", 3 * 3 * 5, 8), ("full", 8 * 3 * 9, 16)):
        c = build_plan(load_spec(name)).counts()
        assert c["tuning"]["cells"] == cells and c["tuning"]["trials"] == cells * samples
        assert (
            c["tuning"]["gpu_hours"] > 0
            and c["total_gpu_hours"] >= c["gpu_hours"] + c["tuning"]["gpu_hours"] - 0.01
        )
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", "smoke-tune", "--plan"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "tuning trials           15   (5 cells x 3 samples" in out.stdout and "final trials" in out.stdout


# --- smoke-tune end to end, killed during tuning and resumed ---------------------------------------------------


def _runs(uri: str, stage: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke-tune")
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=5000)


@pytest.fixture(scope="module")
def smoke_tune(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`python -m orchestrator.study smoke-tune`, SIGKILLed once a cell and one more trial are tuned, then rerun."""
    storage = tmp_path_factory.mktemp("smoke-tune")
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "orchestrator.study", "smoke-tune", "--storage", str(storage)]
    log = storage.parent / "smoke-tune-driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    killed_at = 0
    try:
        deadline, client = time.time() + 600, None
        while time.time() < deadline and killed_at < 4:
            time.sleep(0.3)
            assert driver.poll() is None, (
                "the driver ended before it could be killed:\n" + log.read_text()[-3000:]
            )
            if experiment_made(uri, "smoke-tune"):
                client = client or MlflowClient(uri)
                exp = client.get_experiment_by_name("smoke-tune")
                flt = "tags.stage = 'tune' and attributes.status = 'FINISHED'"
                killed_at = len(client.search_runs([exp.experiment_id], flt, max_results=50))
    finally:
        _kill_tree(driver.pid)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return {"uri": uri, "storage": str(storage), "killed_at": killed_at, "stdout": out.stdout}


def test_every_cell_is_tuned_once_with_its_budget(smoke_tune):
    assert 4 <= smoke_tune["killed_at"] < 15
    tuned, todo = map(
        int, re.search(r"(\d+) cells already tuned, (\d+) to tune", smoke_tune["stdout"]).groups()
    )
    assert tuned >= 1 and todo >= 1 and tuned + todo == 5
    tune = _runs(smoke_tune["uri"], "tune")
    finished = [r for r in tune if r.info.status == "FINISHED"]
    assert Counter(r.data.tags["cell"] for r in finished) == dict.fromkeys(
        {r.data.tags["cell"] for r in finished}, 3
    )
    assert len({r.data.tags["cell"] for r in finished}) == 5
    assert len({(r.data.tags["cell"], r.data.tags["trial_key"]) for r in finished}) == len(finished) == 15
    assert not [r for r in tune if r.info.status == "RUNNING"]
    for r in finished:
        assert (
            r.data.tags["seed"] == "1000000"  # tuning.trial_seed: no final run replays a tuning trial
            and "lr" in r.data.params
            and "best_val_selection_score" in r.data.metrics
        )
        assert not [m for m in r.data.metrics if m.startswith("test_")]  # never in an RQ table
        assert (
            r.data.params["precision"] == "fp32"
        )  # as final runs record it, ASHA-stopped ones too (issue 24)
        assert {"val_selection_score", "val_accuracy"} <= set(r.data.metrics)
        # what a constant scores on validation, ASHA-stopped runs too (logged before training): in [0, 2]
        assert 0.0 < r.data.metrics["val_baseline_selection_score"] <= 2.0


def test_final_runs_use_their_cells_best_configuration(smoke_tune):
    from orchestrator.sweep.tuning import best_run, tuned_names
    from orchestrator.sweep.tuning_trial import METRIC, param_name
    from tasks.base import DEGENERATE_MARGIN

    tune = {r.info.run_id: r for r in _runs(smoke_tune["uri"], "tune") if r.info.status == "FINISHED"}
    final = [r for r in _runs(smoke_tune["uri"], "student") if r.info.status == "FINISHED"]
    assert len(final) == 10 and len({r.data.tags["trial_key"] for r in final}) == 10
    assert Counter(r.data.tags["cell"] for r in final) == dict.fromkeys(
        {r.data.tags["cell"] for r in final}, 2
    )
    for f in final:
        src = tune[f.data.tags["tuned_from"]]
        assert src.data.tags["cell"] == f.data.tags["cell"]
        cell_runs = [r for r in tune.values() if r.data.tags["cell"] == f.data.tags["cell"]]
        assert best_run(cell_runs).info.run_id == src.info.run_id
        names = [param_name(n) for n in tuned_names(src)]
        assert "lr" in names and all(f.data.params[n] == src.data.params[n] for n in names)
        assert (f.data.tags["tuning_samples"], f.data.tags["tuning_diverged"]) == ("3", "0")
        flat = (
            src.data.metrics[METRIC] <= src.data.metrics["val_baseline_selection_score"] + DEGENERATE_MARGIN
        )
        assert f.data.tags["tuning_degenerate"] == str(flat).lower()
        assert f.data.tags["seed"] in ("0", "1") and f.data.tags["seed"] != src.data.tags["seed"]
        assert "test_accuracy" in f.data.metrics


def test_status_and_a_rerun_of_the_finished_study(smoke_tune):
    env = {**os.environ, "MLFLOW_TRACKING_URI": smoke_tune["uri"]}
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", "smoke-tune", "--status", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    st = json.loads(out.stdout)
    assert st["done"] == st["planned"] == 10 and st["tuning"]["cells_done"] == 5
    assert st["tuning"]["trials_finished"] == st["tuning"]["trials_planned"] == 15
    before = {stage: len(_runs(smoke_tune["uri"], stage)) for stage in ("tune", "student")}
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", "smoke-tune", "--storage", smoke_tune["storage"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (
        "nothing left to run: 10/10 trials FINISHED" in out.stdout
    )  # every cell tuned, every final run done
    assert {stage: len(_runs(smoke_tune["uri"], stage)) for stage in ("tune", "student")} == before


def test_tuning_analysis(smoke_tune, tmp_path):
    from orchestrator.analysis import load_runs, run_notebooks, student_runs
    from orchestrator.analysis import tuning as T

    df = T.load_tuning("smoke-tune", smoke_tune["uri"])
    assert len(df) == 15 and set(df["trial"]) == {0, 1, 2}
    best = T.best_params(df)
    assert len(best) == 5 and (best["trials"] == 3).all() and best["lr"].notna().all()
    finals = {r.data.tags["cell"]: r.data.tags["tuned_from"] for r in _runs(smoke_tune["uri"], "student")}
    assert (best["chosen_by"] == "finals").all() and dict(zip(best["cell"], best["run_id"])) == finals
    assert int(df["chosen"].sum()) == 5 and df["baseline"].notna().all()
    assert (df["degenerate"] == (df[T.SCORE] <= df["baseline"] + 0.005)).all()
    tags = {
        r.data.tags["cell"]: r.data.tags["tuning_degenerate"] for r in _runs(smoke_tune["uri"], "student")
    }
    assert {c: str(d).lower() for c, d in zip(best["cell"], best["degenerate"])} == tags
    moved = T.moved_from_default(df)
    lr = moved[moved["param"] == "lr"]
    assert len(lr) == 5 and (lr["default"] == 0.001).all() and (lr["ratio"] > 0).all()
    kd_t = moved[(moved["method"] == "kd") & (moved["param"] == "method.temperature")]
    assert kd_t["default"].tolist() == [10.0]
    assert set(T.moved_by_method(df)["method"]) == {"ft", "kd", "dist", "pkd", "ckd"}
    curves = T.tuning_curves(df)
    assert (curves.groupby("cell")["best_so_far"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert T.plot_tuning_curves(df).axes
    runs = load_runs("smoke-tune", smoke_tune["uri"])
    assert len(student_runs(runs)) == 10  # the RQ tables see the final runs only
    written = run_notebooks(tmp_path / "nb", "smoke-tune", smoke_tune["uri"], notebooks=["07_tuning.ipynb"])
    assert written and (tmp_path / "nb" / "figures" / "tuning_curves.png").exists()


def test_best_params_is_the_run_the_finals_used_else_the_highest_score():
    """After ``samples`` was lowered, the finals' run (best of the first ``samples``) is not the highest score
    among all the cell's runs: the table shows what the finals were trained with, and says so."""
    import pandas as pd

    from orchestrator.analysis import tuning as T

    rows = [  # cell a: its finals used run a1 (the best of its first 2), a3 scored higher later
        ("a", "a1", 1, 0.70, True, 1e-3),
        ("a", "a2", 2, 0.60, False, 2e-3),
        ("a", "a3", 3, 0.90, False, 3e-3),
        ("b", "b1", 1, 0.50, False, 4e-3),  # cell b: no final run yet, so the rule
        ("b", "b2", 2, 0.80, False, 5e-3),
    ]
    df = pd.DataFrame(
        [
            dict(zip(T.CELL_COLUMNS, (c, "defect", "t", "s", "kd", "all"), strict=True))
            | {"run_id": r, "start_time": t, T.SCORE: v, "chosen": ch, "tuned": "lr", "lr": lr}
            for c, r, t, v, ch, lr in rows
        ]
    )
    best = T.best_params(df).set_index("cell")
    assert best.loc["a", ["run_id", "chosen_by", "lr"]].tolist() == ["a1", "finals", 1e-3]
    assert best.loc["b", ["run_id", "chosen_by", "lr"]].tolist() == ["b2", "score", 5e-3]
    assert best["trials"].tolist() == [3, 2]


def test_a_trial_the_scheduler_stopped_is_finished_and_tagged(tmp_path):
    """The driver-side recorder completes a tuning run whose worker was stopped inside tune.report."""
    from types import SimpleNamespace

    from orchestrator.sweep.tuning_stage import TuneRecorder

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("rec")
    stopped, full = (client.create_run(exp, tags={"stage": "tune"}).info.run_id for _ in range(2))
    rec = TuneRecorder(uri, max_epochs=3)
    for trial_id, run_id, epochs in (("a", stopped, 1), ("b", full, 3)):
        trial = SimpleNamespace(trial_id=trial_id)
        for epoch in range(1, epochs + 1):
            row = {"val_selection_score": 0.1 * epoch, "val_accuracy": 0.2 * epoch, "train_loss": 1.0 / epoch}
            result = {"run_id": run_id, "epoch": float(epoch), "best_val_selection_score": 0.1 * epoch, **row}
            rec.on_trial_result(0, [], trial, result)
            if run_id == full:  # this worker logged each epoch itself; the stopped one was ended first
                tracking.log_metrics(client, run_id, row, step=epoch)
        rec.on_trial_complete(0, [], trial)
    a, b = client.get_run(stopped), client.get_run(full)
    assert a.data.metrics["val_accuracy"] == pytest.approx(0.2) and a.data.metrics["train_loss"] == 1.0
    assert [m.step for m in client.get_metric_history(stopped, "val_selection_score")] == [1]
    assert [m.step for m in client.get_metric_history(full, "val_selection_score")] == [1, 2, 3]  # no copies
    assert a.info.status == b.info.status == "FINISHED"
    assert a.data.tags.get("stopped_early") == "true" and "stopped_early" not in b.data.tags
    assert a.data.metrics["best_val_selection_score"] == pytest.approx(0.1)
    assert b.data.metrics["best_val_selection_score"] == pytest.approx(0.3)
