"""What ``load_runs``, the completion loader and the notebooks' store lookup make of unusual stores (the analysis
audit): trials that never finished, runs of older code, non-finite scores, reruns of a completion trial, and
tracking URIs that lead nowhere. Real MLflow SQLite stores under tmp_path, with the tags the platform writes."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from orchestrator import analysis as A
from orchestrator.analysis import completion as C
from orchestrator.analysis.store import StoreNotFound, store_uri

FAMILY = {"ft": "none", "kd": "logit", "pkd": "feature"}


class Study:
    """A study's store as the platform writes it: a study run, a teacher fine-tune, student trials."""

    def __init__(self, root: Path, name: str = "s") -> None:
        (root / "mlflow").mkdir(parents=True, exist_ok=True)
        self.root, self.name = root, name
        self.uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.exp = self.client.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
        self.t = 1_700_000_000_000

    def run(self, tags: dict, metrics: dict, params: dict | None = None, status: str = "FINISHED") -> str:
        self.t += 1000  # each run newer than the one before
        rid = self.client.create_run(
            self.exp, start_time=self.t, tags={**tags, "study": self.name}
        ).info.run_id
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), self.t, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
        )
        if status != "RUNNING":
            self.client.set_terminated(rid, status)
        return rid

    def study_run(self, status: str = "FINISHED", **metrics: float) -> str:
        return self.run({"stage": "study"}, metrics, status=status)

    def teacher(self, score: float = 0.7) -> str:
        none = dict.fromkeys(
            ("student", "student_arch", "student_params", "method", "method_family", "seed"), "none"
        )
        tags = {
            **none,
            "stage": "teacher_finetune",
            "task": "defect",
            "teacher": "unixcoder",
            "trial_key": "t",
        }
        return self.run(tags, {"test_score": score, "test_majority_baseline": 0.5})

    def student(
        self,
        method: str,
        seed: int,
        score: float | None,
        status: str = "FINISHED",
        error: str | None = None,
        **kw,
    ) -> str:
        teacher = "none" if method == "ft" else "unixcoder"
        labels = kw.pop("labels", "all")
        tags = {
            "stage": "student", "task": "defect", "teacher": teacher, "student": "roberta-7m",
            "student_arch": "roberta", "student_params": "7000000", "method": method, "method_family": FAMILY[method],
            "seed": str(seed), "labels": labels, "trial_key": f"defect|roberta-7m|{method}|{teacher}|{seed}|{labels}",
        }  # fmt: skip
        for tag in kw.pop("drop", ()):
            tags.pop(tag)
        metrics = {"test_majority_baseline": 0.5, "train_seconds": 10.0}
        if score is not None:
            metrics.update(test_score=score, test_accuracy=score)
        params = {"epochs": 2} if kw.pop("no_seed_param", False) else {"epochs": 2, "seed": seed}
        rid = self.run(tags, metrics, params, status)
        if error:  # as core/tracking.record_failure records a trial that raised
            self.client.set_tag(rid, "error", error)
        return rid


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KDSTUDY_STATE_DIR", str(tmp_path / "state"))


# ------------------------------------------------------------------- trials that never finished (c02, c13)


def test_the_divergence_tag_is_the_trainers_error() -> None:
    from orchestrator.analysis.progress import DIVERGED
    from orchestrator.train.trainer import NonFiniteLossError

    assert DIVERGED == NonFiniteLossError.__name__


def test_unfinished_trials_are_rows_of_their_own_that_no_table_counts(tmp_path: Path) -> None:
    st = Study(tmp_path)
    st.study_run("KILLED", trials_planned=14, trials_finished=8)
    st.teacher()
    for seed in range(6):
        st.student("ft", seed, 0.60 + 0.01 * seed)
    for seed in range(4):
        st.student("kd", seed, 0.65 + 0.01 * seed)
    st.student("kd", 4, None, "FAILED", "NonFiniteLossError: loss is nan at step 7")
    st.student("kd", 5, None, "FAILED", "OutOfMemoryError: CUDA out of memory")
    st.student("kd", 6, 0.99, "KILLED")  # a test metric logged before the kill is no result
    st.student("kd", 7, None, "RUNNING")
    st.student("kd", 3, None, "RUNNING")  # a newer retry of a finished trial: the finished run counts
    failed = st.student("kd", 2, None, "FAILED", "WorkerStopped: node lost")  # an older attempt, then...
    st.student(
        "pkd", 0, None, "FAILED", "NonFiniteLossError: loss is inf", labels="count=20"
    )  # a level unfinished
    df = A.load_runs("s", st.uri)

    un = A.load.unfinished(df)
    by_seed = {(r.method, r.seed): (r.status, r.diverged) for r in un.itertuples()}
    assert by_seed == {
        ("kd", 4): ("FAILED", True),
        ("kd", 5): ("FAILED", False),
        ("kd", 6): ("KILLED", False),
        ("kd", 7): ("RUNNING", False),
        ("pkd", 0): ("FAILED", True),
    }
    assert un["primary"].isna().all() and un["test_accuracy"].isna().all()
    kd3 = df[(df["method"] == "kd") & (df["seed"] == 3)]
    assert kd3["status"].tolist() == ["FINISHED"] and kd3["primary"].iloc[0] == pytest.approx(0.68)
    assert failed not in set(
        df["run_id"]
    )  # kd seed 2 finished earlier: the failed attempt is no trial of its own
    assert A.load.superseded(df) == 0  # attempts that did not finish are no superseded results
    assert (
        df["status"].isin(["FINISHED", "FAILED", "KILLED", "RUNNING"]).all() and df["diverged"].dtype == bool
    )

    # every consumer reads the finished runs only, as before
    s = A.student_runs(df)
    assert len(s) == 10 and (s["status"] == "FINISHED").all()
    summary = A.degenerate_summary(df)
    assert summary.loc[summary["stage"] == "student", "runs"].sum() == 10
    assert A.load.label_levels(df) == [
        "all"
    ]  # the unfinished level has no finished run: no tables of its own
    assert len(A.teacher_scores(df)) == 1
    line = A.load.progress(df)
    assert "14 planned, 8 finished (study run KILLED)" in line
    assert (
        "5 student trials have no finished run: 2 diverged (non-finite loss), 1 FAILED, 1 KILLED, 1 RUNNING"
        in line
    )


def test_a_study_whose_every_trial_failed_says_so(tmp_path: Path) -> None:
    st = Study(tmp_path)
    st.study_run("FAILED", trials_planned=4, trials_finished=0)
    st.teacher()
    for seed in range(2):
        st.student("ft", seed, None, "FAILED", "FileNotFoundError: data/defect/train.jsonl")
        st.student("kd", seed, None, "RUNNING" if seed else "FAILED", "NonFiniteLossError: loss is nan")
    df = A.load_runs("s", st.uri)
    why = A.load.why_none(df, "the study needs FT and KD student runs")
    assert (
        why == "no student trial of this study finished (1 diverged (non-finite loss), 2 FAILED, 1 RUNNING)"
    )
    with pytest.raises(A.NotApplicable, match="no student trial of this study finished"):
        A.figure2(df, tmp_path / "figure2.png")

    failures: list = []
    A.run_notebooks(tmp_path / "nb", "s", st.uri, ["01_rq1_effectiveness.ipynb"], failures=failures)
    assert [(f.ename, f.evalue) for f in failures] == [("NotApplicable", why)]  # not "the study needs ..."
    setup = json.dumps(
        json.loads((tmp_path / "nb" / "01_rq1_effectiveness.ipynb").read_text())["cells"][1]["outputs"]
    )
    assert "study 's': 1 finished runs" in setup  # the teacher's (the study run failed)
    assert "trials: 4 planned, 0 finished (study run FAILED); 4 student trials have no finished run" in setup


# ------------------------------------------------------------------------------ older runs (c04)


def test_runs_without_seed_and_family_tags_read_the_param_and_the_registry(tmp_path: Path) -> None:
    st = Study(tmp_path)
    st.study_run()
    for seed in range(6):
        for method in ("ft", "kd", "pkd"):
            st.student(method, seed, 0.6 + 0.01 * seed, drop=("seed", "method_family"))
    for _ in range(2):  # neither a seed tag nor a seed param: the seed is unknown, and no rerun of the other
        st.student("kd", 0, 0.7, drop=("seed",), no_seed_param=True)
    df = A.load_runs("s", st.uri)
    s = A.student_runs(df)
    assert A.load.superseded(df) == 0 and len(s) == 20  # 18 seeded runs and both seedless ones: no reruns
    assert sorted(s["seed"].dropna().unique()) == list(range(6)) and s["seed"].isna().sum() == 2
    assert s.groupby("method")["method_family"].unique().map(list).to_dict() == {
        "ft": ["none"],
        "kd": ["logit"],
        "pkd": ["feature"],
    }
    assert A.load.method_family("no-such-method") == "unknown"


# ----------------------------------------------------------------------------- non-finite scores (c07)


def test_nan_and_inf_scores_are_missing_and_counted(tmp_path: Path) -> None:
    st = Study(tmp_path)
    st.study_run()
    st.student("kd", 0, math.inf)  # MLflow stores +inf as 1.797e308
    st.student("kd", 1, math.nan)
    st.student("kd", 2, -math.inf)
    st.student("kd", 3, 0.7)
    df = A.load_runs("s", st.uri)
    by_seed = df.set_index("seed")
    assert by_seed.loc[[0, 1, 2], "primary"].isna().all() and by_seed.loc[3, "primary"] == 0.7
    assert by_seed.loc[0, "test_accuracy"] != by_seed.loc[0, "test_accuracy"]  # NaN, not 1.8e308
    assert sorted(A.load.unscored(df)["seed"]) == [0, 1, 2]
    assert A.student_runs(df)["primary"].max() == 0.7
    assert A.degenerate_summary(df)["best"].max() == 0.7


# ----------------------------------------------------------------------- completion reruns (c09)


def test_a_completion_trial_finished_twice_counts_once(tmp_path: Path) -> None:
    st = Study(tmp_path, "c")
    st.run({"stage": "study", "task": "completion"}, {})
    st.run({"stage": "teacher", "task": "completion", "teacher": "gpt2", "trial_key": "t"}, {"test_es": 30.0})

    def student(seed: int, es: float, key: bool = True) -> None:
        tags = {
            "stage": "student", "task": "completion", "teacher": "gpt2", "student": "gpt2-1l", "method": "distil",
            "seed": str(seed), "teacher_mode": "cached", "student_init": "teacher_layers",
        }  # fmt: skip
        if key:
            tags["trial_key"] = f"gpt2-1l|cached|{seed}"
        st.run(tags, {"test_es": es, "test_em": es / 5, "student_params": 5e5})

    student(0, 20.0)
    student(1, 22.0)
    student(1, 26.0)  # the same trial again: only this newest run counts
    student(2, 10.0, key=False)  # an older study's runs, without trial_key: the factors identify the trial
    student(2, 12.0, key=False)
    st.run({"stage": "student", "task": "completion", "trial_key": "gpt2-1l|cached|3"}, {}, status="FAILED")
    runs = C.load_completion_runs("c", st.uri)
    assert runs.attrs["n_superseded"] == 2
    table = C.poster_table(runs)
    assert table.loc["gpt2-1l", "seeds"] == 3 and table.loc["gpt2-1l", "es"] == pytest.approx(
        (20 + 26 + 12) / 3
    )
    assert C.poster_comparable(runs) == (
        False,
        "no run records its line-level set: the poster's figures are left out",
    )
    st.client.delete_experiment(st.exp)
    with pytest.raises(LookupError, match="deleted"):
        C.load_completion_runs("c", st.uri)


@pytest.mark.parametrize(
    ("versions", "comparable", "said"),
    [
        (
            ["codexglue-2021", "codexglue-2021"],
            True,
            "scored on codexglue-2021: the poster's figures stand beside",
        ),
        (["codexglue-2021", "own"], False, "scored on own, not CodeXGLUE's set"),
        (["local-proxy", ""], False, "scored on local-proxy, not CodeXGLUE's set"),
    ],
)
def test_the_poster_stands_beside_runs_by_their_data_not_the_study_name(
    versions: list[str], comparable: bool, said: str
) -> None:
    """A study of any name on CodeXGLUE's line-level set is comparable with the poster; a proxy or own set is not
    (the notebook chose by the name ``completion-full``)."""
    ok, why = C.poster_comparable(pd.DataFrame({"codexglue_version": versions}))
    assert ok is comparable and said in why


# --------------------------------------------------------------- stores the notebooks cannot read (c08, c14, c15)


@pytest.fixture
def bad_gateway() -> Iterator[str]:
    """A proxy whose server behind it is down: 502 on every path."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(502)
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_proxy_answering_5xx_fails_at_once(bad_gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", bad_gateway)
    began = time.monotonic()
    with pytest.raises(StoreNotFound, match="unreachable .*502"):
        store_uri("s", None)
    assert time.monotonic() - began < 10  # MLflow's client retries a 5xx for minutes


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("file:///{tmp}/mlruns", "file store or plain path"),
        ("{tmp}/mlruns", "file store or plain path"),
        ("mlflw://typo", "unknown scheme 'mlflw://'"),
        ("postgresql://user:secret@127.0.0.1:9/db", "cannot read the store"),
    ],
)
def test_uris_the_analysis_cannot_read_are_one_line(
    uri: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(tmp=tmp_path))
    with pytest.raises(StoreNotFound) as err:
        store_uri("s", None)
    msg = str(err.value)
    assert words in msg and "\n" not in msg and "secret" not in msg
    assert not (tmp_path / "mlruns").exists()  # nothing created


def test_a_deleted_study_is_refused(tmp_path: Path) -> None:
    st = Study(tmp_path, "gone")
    st.study_run()
    st.client.delete_experiment(st.exp)
    with pytest.raises(StoreNotFound, match="study 'gone' was deleted in .*restore it"):
        store_uri("gone", str(tmp_path))
    with pytest.raises(LookupError, match="it was deleted"):
        A.load_runs("gone", st.uri)


def test_an_empty_store_file_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    db.touch()  # a store whose making was interrupted
    with pytest.raises(StoreNotFound, match=r"the file is empty \(0 bytes\)"):
        store_uri("s", str(tmp_path))
    assert db.stat().st_size == 0 and sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(StoreNotFound, match="empty"):
        store_uri("s", None)
    assert db.stat().st_size == 0


def test_the_command_says_it_in_one_line_with_status_2(
    bad_gateway: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.analysis import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", bad_gateway)
    assert cli.main(["notebooks", "--study", "s"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "502" in err


def test_load_runs_frames_keep_their_columns() -> None:
    assert {"status", "diverged"} <= set(A.COLUMNS)
    assert pd.Index(A.COLUMNS).is_unique


def test_a_study_without_student_runs_yet_keeps_its_other_runs() -> None:
    """Mid-tuning a study has tune runs only: the rerun filter (student and teacher_finetune runs) selected none,
    and assigning a column to that empty selection gave it every row (pandas 3), so all tune runs but one went."""
    from orchestrator.analysis.load import COLUMNS, latest_runs

    rows = [
        {**dict.fromkeys(COLUMNS), "stage": "tune", "run_id": f"r{i}", "start_time": i, "status": "FINISHED",
         "trial_key": f"k{i}", "seed": 1}
        for i in range(3)
    ]  # fmt: skip
    assert list(latest_runs(pd.DataFrame(rows))["run_id"]) == ["r0", "r1", "r2"]
