"""orchestrator/analysis/ and the notebooks against a small real MLflow store that follows the contract
(docs/CONTRACTS.md, section MLflow): 2 tasks, RoBERTa and BiGRU students at two sizes, FT/KD/PKD, 2 teachers,
3 seeds, teacher_finetune and teacher_cache runs, predictions artifacts. Scores are built so the expected
answers are known: every defect accuracy is a whole number of correct test samples out of 100."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy.stats import friedmanchisquare, wilcoxon
from sklearn.metrics import f1_score

from orchestrator import analysis as A

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

STUDY = "analysis-fixture"
N_TEST = 100
TASKS = ("defect", "clone")
STUDENTS = {  # name -> (arch, params, inference samples/s)
    "roberta-7m": ("roberta", 7_100_000, 800.0),
    "roberta-tiny": ("roberta", 310_000, 3000.0),
    "bigru-7m": ("bigru", 6_900_000, 800.0),
    "bigru-tiny": ("bigru", 290_000, 3000.0),
}
TEACHERS = {"unixcoder": (126_000_000, 66), "modernbert": (149_000_000, 62)}  # params, correct test samples
METHODS = {"ft": "none", "kd": "logit", "pkd": "feature"}
SEEDS = (0, 1, 2)
# Correct test samples = 50 + gains: KD always beats FT of the same seed on defect, PKD beats KD, BiGRU beats
# RoBERTa by one sample, UniXcoder students beat ModernBERT ones by one.
METHOD_GAIN = {"ft": 0, "kd": 3, "pkd": 4}
SIZE_GAIN = {"7m": 6, "tiny": 2}
ARCH_GAIN = {"roberta": 0, "bigru": 1}
TEACHER_GAIN = {"unixcoder": 1, "modernbert": 0, "none": 0}
SEED_NOISE = {0: -1, 1: 0, 2: 1}
TRAIN_S = {"7m": 30.0, "tiny": 10.0}
KD_COST = {"ft": 1.0, "kd": 1.2, "pkd": 1.5}
IDENTICAL = ("defect", "roberta-7m", "unixcoder", "pkd", 0)  # this run predicts exactly what its teacher does
EPOCHS, BATCH, TRAIN_SAMPLES = 2, 16, 64
STEPS = 7  # logged optimizer steps of a trial; deliberately not EPOCHS * TRAIN_SAMPLES / BATCH = 8
FOUND_CACHE = ("modernbert", "clone")  # its cache run found the cache built: it made no teacher pass


@dataclass
class Store:
    uri: str
    root: Path
    client: MlflowClient
    preds: dict[tuple, np.ndarray] = field(default_factory=dict)  # trial key -> student preds
    teacher_preds: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def _log(
    client: MlflowClient,
    exp: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, object],
    preds: dict | None = None,
    status: str = "FINISHED",
) -> str:
    run = client.create_run(exp, tags={**tags, "study": STUDY})
    rid = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        rid,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    if preds is not None:
        client.log_dict(rid, preds, "predictions/test.json")
    client.set_terminated(rid, status=status)
    return rid


def _pred_json(labels: np.ndarray, pred: np.ndarray) -> dict:
    probs = np.where(pred[:, None] == np.arange(2)[None, :], 0.8, 0.2)
    return {
        "idx": list(range(len(labels))),
        "label": labels.tolist(),
        "pred": pred.tolist(),
        "probs": probs.tolist(),
    }


def _metrics(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"test_accuracy": float((pred == labels).mean()), "test_f1": float(f1_score(labels, pred))}


def build_store(root: Path) -> Store:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("another-study", artifact_location=(root / "other").as_uri())
    client.delete_experiment(
        client.create_experiment("deleted-study", artifact_location=(root / "gone").as_uri())
    )
    exp = client.create_experiment(STUDY, artifact_location=(root / "artifacts").as_uri())
    store = Store(uri=uri, root=root, client=client)
    # one cache of the four was found already built (teacher_passes 0), as on a resumed study
    _log(client, exp, {"stage": "study"}, {"teacher_passes": 3}, {"study_name": STUDY})
    none = dict.fromkeys(["student", "student_arch", "student_params", "method", "method_family"], "none")
    for t_i, task in enumerate(TASKS):
        rng = np.random.default_rng(100 + t_i)
        labels = rng.integers(0, 2, N_TEST)
        store.labels[task] = labels
        for teacher, (tparams, correct) in TEACHERS.items():
            pred = labels.copy()
            wrong = rng.permutation(N_TEST)[correct:]
            pred[wrong] = 1 - pred[wrong]
            store.teacher_preds[(teacher, task)] = pred
            base = {"task": task, "teacher": teacher, "seed": "0", **none}
            _log(
                client,
                exp,
                {**base, "stage": "teacher_finetune", "trial_key": f"ft-{teacher}-{task}"},
                {**_metrics(labels, pred), "teacher_params": tparams, "inference_samples_per_s": 100.0},
                {"epochs": 5},
            )
            _log(
                client,
                exp,
                {**base, "stage": "teacher_cache", "trial_key": f"cache-{teacher}-{task}"},
                {
                    "cache_bytes": 1e6,
                    "build_seconds": 12.0,
                    "teacher_passes": int((teacher, task) != FOUND_CACHE),
                },
                {},
                preds=_pred_json(labels, pred),
            )
        for student, (arch, params, speed) in STUDENTS.items():
            size = A.size_key(student)
            for method, family in METHODS.items():
                for teacher in ["none"] if method == "ft" else list(TEACHERS):
                    for seed in SEEDS:
                        key = (task, student, teacher, method, seed)
                        correct = (
                            50
                            + SIZE_GAIN[size]
                            + ARCH_GAIN[arch]
                            + METHOD_GAIN[method]
                            + TEACHER_GAIN[teacher]
                            + SEED_NOISE[seed]
                        )
                        r = np.random.default_rng(
                            zlib.crc32(repr(key).encode())
                        )  # hash() is salted per process
                        if key == IDENTICAL:
                            pred = store.teacher_preds[(teacher, task)].copy()
                        else:
                            if method == "ft":
                                right = r.permutation(N_TEST)[:correct]  # FT: errors unrelated to a teacher
                            else:
                                # KD: right where the teacher is right first, so it mostly agrees with it
                                tp = store.teacher_preds[(teacher, task)]
                                order = np.concatenate(
                                    [
                                        r.permutation(np.flatnonzero(tp == labels)),
                                        r.permutation(np.flatnonzero(tp != labels)),
                                    ]
                                )
                                right = order[:correct]
                            pred = 1 - labels
                            pred[right] = labels[right]
                        store.preds[key] = pred
                        ft_s = TRAIN_S[size] + 0.1 * seed
                        _log(
                            client,
                            exp,
                            {
                                "stage": "student",
                                "task": task,
                                "teacher": teacher,
                                "student": student,
                                "student_arch": arch,
                                "student_params": str(params),
                                "method": method,
                                "method_family": family,
                                "seed": str(seed),
                                "trial_key": "-".join(map(str, key)),
                            },
                            {
                                **_metrics(labels, pred),
                                "train_seconds": ft_s * KD_COST[method],
                                "teacher_seconds": 0.0 if method == "ft" else 0.5,
                                "inference_samples_per_s": speed,
                                "student_params": params,
                                "best_epoch": 1,
                                "steps": STEPS,
                            },
                            {
                                "epochs": EPOCHS,
                                "batch_size": BATCH,
                                "train_samples": TRAIN_SAMPLES,
                                "lr": 3e-4,
                            },
                            preds=_pred_json(labels, pred),
                        )
    # a failed trial must not count
    _log(
        client,
        exp,
        {
            "stage": "student",
            "task": "defect",
            "teacher": "none",
            "student": "roberta-7m",
            "method": "ft",
            "seed": "9",
        },
        {"test_accuracy": 0.99},
        {},
        status="FAILED",
    )
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    # SQLite syncs to disk on every commit (several per logged run): in memory-backed /dev/shm, where there is
    # one, building the store takes a third of the time it takes on disk.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="test-analysis-") as tmp:
            yield build_store(Path(tmp))
    else:
        yield build_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def df(store: Store) -> pd.DataFrame:
    return A.load_runs(STUDY, store.uri)


N_STUDENT_RUNS = len(TASKS) * len(STUDENTS) * len(SEEDS) * (1 + 2 * len(TEACHERS))


def _seed_scores(df: pd.DataFrame, **factors: str) -> pd.Series:
    rows = df[df["stage"] == "student"]
    for k, v in factors.items():
        rows = rows[rows[k] == v]
    return rows.set_index("seed")["primary"].sort_index()


# ------------------------------------------------------------------------------------------ loading


def test_load_runs_shape_and_dtypes(df: pd.DataFrame) -> None:
    n_teacher = len(TASKS) * len(TEACHERS)
    assert len(df) == 1 + 2 * n_teacher + N_STUDENT_RUNS + 1  # + the FAILED trial's row (status FAILED)
    assert df["stage"].value_counts().to_dict() == {
        "student": N_STUDENT_RUNS + 1,
        "teacher_finetune": n_teacher,
        "teacher_cache": n_teacher,
        "study": 1,
    }
    assert list(df.columns) == list(A.COLUMNS)
    assert df["run_id"].is_unique
    for col in ("seed", "student_params"):
        assert pd.api.types.is_integer_dtype(df[col]), col
    for col in ("primary", "test_accuracy", "test_f1", "train_seconds", "epochs", "batch_size"):
        assert pd.api.types.is_float_dtype(df[col]), col
    for col in A.TAG_COLUMNS:
        assert pd.api.types.is_string_dtype(df[col]), col
    s = A.student_runs(df)
    assert len(s) == N_STUDENT_RUNS
    assert s["seed"].notna().all() and set(s["seed"]) == set(SEEDS)
    assert set(s["student_params"]) == {p for _, p, _ in STUDENTS.values()}
    assert (s.loc[s["method"] == "ft", "teacher"] == "none").all()
    # primary: defect accuracy, clone F1
    d, c = s[s["task"] == "defect"], s[s["task"] == "clone"]
    assert (d["primary"] == d["test_accuracy"]).all()
    assert (c["primary"] == c["test_f1"]).all()
    assert not (c["test_f1"] == c["test_accuracy"]).all()  # otherwise the check above proves nothing
    # teacher runs have no seed-less garbage: the tag "none" is a missing integer
    assert df.loc[df["stage"] == "teacher_cache", "student_params"].isna().all()


def test_load_runs_missing_experiment_names_existing(store: Store) -> None:
    with pytest.raises(LookupError) as err:
        A.load_runs("no-such-study", store.uri)
    msg = str(err.value)
    assert "no-such-study" in msg and STUDY in msg and "another-study" in msg
    with pytest.raises(LookupError) as err:
        A.load_runs("deleted-study", store.uri)
    existing = str(err.value).split("existing experiments:")[1]
    assert "another-study" in existing and "deleted-study" not in existing


def test_teacher_scores(df: pd.DataFrame) -> None:
    t = A.teacher_scores(df).set_index(["teacher", "task"])
    assert t.loc[("unixcoder", "defect"), "primary"] == pytest.approx(0.66)
    assert t.loc[("modernbert", "defect"), "primary"] == pytest.approx(0.62)
    assert t.loc[("unixcoder", "clone"), "teacher_params"] == 126_000_000
    assert A.default_teacher(df) == "unixcoder"


# --------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], 0.0),
        ([4, 5], [1, 2, 3], 1.0),
        ([1], [2, 3], -1.0),
        ([1, 2, 3], [2], 0.0),
        ([3, 4], [1, 3], 0.75),  # 3 of 4 pairs greater, one tie
    ],
)
def test_cliffs_delta_by_hand(x: list[float], y: list[float], expected: float) -> None:
    assert A.cliffs_delta(x, y) == pytest.approx(expected)
    assert A.cliffs_delta(y, x) == pytest.approx(-expected)


def test_cliffs_delta_empty_is_nan() -> None:
    assert np.isnan(A.cliffs_delta([], [1.0]))


def test_holm_by_hand() -> None:
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> raised to the running max 0.06
    np.testing.assert_allclose(A.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # NaN is not a hypothesis: m = 2
    np.testing.assert_allclose(A.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(A.holm([0.6, 0.7]), [1.0, 1.0])  # capped at 1


def test_paired_comparison_edge_cases() -> None:
    a = pd.Series([0.5, 0.6, 0.7], index=[0, 1, 2])
    same = A.paired_comparison(a, a.copy())
    assert np.isnan(same["p_wilcoxon"]) and same["test"] == "not testable (n = 3)" and same["delta"] == 0
    one = A.paired_comparison(a, pd.Series([0.4, 0.9], index=[2, 7]))  # only seed 2 pairs
    assert one["n_pairs"] == 1 and np.isnan(one["p_wilcoxon"]) and one["test"] == "not testable (n = 1)"
    assert one["a_n"] == 3 and one["b_n"] == 2
    assert np.isnan(one["cliffs_delta"]) and "Cliff's delta not testable (n = 3 vs 2)" in one["note"]
    empty = A.paired_comparison(a, pd.Series(dtype=float))
    assert empty["n_pairs"] == 0 and np.isnan(empty["delta"]) and np.isnan(empty["cliffs_delta"])
    rng = np.random.default_rng(0)
    x, y = pd.Series(rng.normal(size=8)), pd.Series(rng.normal(size=8) + 1.0)
    res = A.paired_comparison(x, y)
    assert res["p_wilcoxon"] == pytest.approx(wilcoxon(x, y).pvalue)
    assert res["note"] == "" and res["test"].startswith("p = ")  # 8 pairs can reach p < 0.05
    assert res["cliffs_delta"] == pytest.approx(A.cliffs_delta(x, y))


# -------------------------------------------------------------------------------------------- RQ1-4


def test_compare_to_ft(df: pd.DataFrame) -> None:
    rq1 = A.compare_to_ft(df)
    assert len(rq1) == len(TASKS) * len(STUDENTS) * len(TEACHERS) * 2
    assert set(rq1["method"]) == {"kd", "pkd"}
    assert (rq1["n_pairs"] == 3).all() and (rq1["kd_n"] == 3).all() and (rq1["ft_n"] == 3).all()
    d = rq1[rq1["task"] == "defect"]
    assert (d["delta"] > 0).all()
    # every KD seed beats every FT seed by construction, but 3 vs 3 scores resolve no effect size or test
    assert d["cliffs_delta"].isna().all() and (rq1["test"] == "not testable (n = 3)").all()
    assert (rq1["verdict"] == "not testable (n = 3)").all() and rq1["p_holm"].isna().all()
    assert (rq1["n_degenerate"] == 0).all() and not rq1["teacher_degenerate"].any()
    row = d[(d["student"] == "bigru-tiny") & (d["teacher"] == "modernbert") & (d["method"] == "kd")].iloc[0]
    assert row["delta"] == pytest.approx(METHOD_GAIN["kd"] / N_TEST)
    kd = _seed_scores(df, task="defect", student="bigru-tiny", teacher="modernbert", method="kd")
    ft = _seed_scores(df, task="defect", student="bigru-tiny", method="ft")
    assert row["kd_mean"] == pytest.approx(kd.mean()) and row["ft_std"] == pytest.approx(ft.std())
    assert np.isnan(row["p_wilcoxon"])  # 3 pairs: the exact test cannot go below 0.25


def _two_levels(df: pd.DataFrame) -> pd.DataFrame:
    """The fixture's runs as a study with a labels factor: ``all`` (as recorded, without the tag: runs made before
    the factor) and ``count=20`` (20 labels + 44 unlabelled), whose runs (teachers included) score 0.1 lower."""
    few = df.assign(
        labels="count=20", labelled_samples=20.0, unlabelled_samples=44.0, primary=df["primary"] - 0.1
    )
    return pd.concat([df, few], ignore_index=True)


def test_tables_and_figure2_group_by_the_labels_level(df: pd.DataFrame) -> None:
    assert (df["labels"] == "all").all() and A.load.label_levels(df) == ["all"]  # no tag: every label
    both = _two_levels(df)
    assert A.load.label_levels(both) == ["count=20", "all"]
    rq1, plain = A.compare_to_ft(both), A.compare_to_ft(df)
    assert list(rq1.columns[:2]) == ["task", "labels"] and len(rq1) == 2 * len(plain)
    for level, g in rq1.groupby("labels"):
        # each level is compared with its own FT: a uniform shift leaves every delta as it was
        assert g["delta"].to_numpy() == pytest.approx(plain["delta"].to_numpy()), level
    few = rq1[rq1["labels"] == "count=20"]
    assert few["kd_mean"].to_numpy() == pytest.approx(plain["kd_mean"].to_numpy() - 0.1)
    teachers = A.teacher_scores(both)
    assert set(teachers["labels"]) == {"count=20", "all"} and len(teachers) == 2 * len(A.teacher_scores(df))
    assert A.load.regime(both, "defect", "count=20") == "20 labels + 44 unlabelled"
    fig = A.build_figure2(both, study="s")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 * len(A.build_figure2(df).axes)
    assert sum("| 20 labels + 44 unlabelled" in t for t in titles) == len(titles) // 2


def test_compare_teachers(df: pd.DataFrame) -> None:
    rq2 = A.compare_teachers(df)
    assert len(rq2) == len(TASKS) * len(STUDENTS) * 2
    assert (rq2["teacher_a"] == "modernbert").all() and (rq2["teacher_b"] == "unixcoder").all()
    row = rq2[(rq2["task"] == "defect") & (rq2["student"] == "bigru-7m") & (rq2["method"] == "kd")].iloc[0]
    assert row["delta"] == pytest.approx(-TEACHER_GAIN["unixcoder"] / N_TEST)
    assert row["teacher_a_score"] == pytest.approx(0.62) and row["teacher_b_score"] == pytest.approx(0.66)
    a = _seed_scores(df, task="defect", student="bigru-7m", method="kd", teacher="modernbert")
    b = _seed_scores(df, task="defect", student="bigru-7m", method="kd", teacher="unixcoder")
    assert len(a) == len(b) == 3 and np.isnan(row["p_wilcoxon"]) and row["test"] == "not testable (n = 3)"
    side = A.teachers_side_by_side(df)
    assert {"unixcoder", "modernbert", "ft", "score_unixcoder"} <= set(side.columns)
    assert len(side) == len(TASKS) * len(STUDENTS) * 2


def test_retention_is_student_over_teacher(df: pd.DataFrame) -> None:
    r = A.retention(df)
    # KD runs once (their teacher), FT runs once per teacher
    assert len(r) == N_STUDENT_RUNS + len(TASKS) * len(STUDENTS) * len(SEEDS) * (len(TEACHERS) - 1)
    teacher = A.teacher_scores(df).set_index(["teacher", "task"])["primary"]
    primary = df.set_index("run_id")["primary"]
    for row in r.sample(20, random_state=0).itertuples():
        assert row.retention == pytest.approx(primary[row.run_id] / teacher[(row.teacher, row.task)])
    ident = r[(r["task"] == "defect") & (r["student"] == "roberta-7m") & (r["method"] == "pkd")]
    ident = ident[(ident["teacher"] == "unixcoder") & (ident["seed"] == 0)]
    assert ident["retention"].iloc[0] == pytest.approx(1.0)  # predicts what the teacher predicts
    assert r.loc[r["student"] == "roberta-7m", "param_ratio"].iloc[0] == pytest.approx(
        7_100_000 / TEACHERS[r.loc[r["student"] == "roberta-7m", "teacher"].iloc[0]][0]
    )
    fam = A.family_summary(df)
    assert set(fam["method_family"]) == {"none", "logit", "feature"}
    best = fam[
        (fam["task"] == "defect") & (fam["teacher"] == "unixcoder") & (fam["method_family"] == "feature")
    ]
    assert best["best_student"].iloc[0] == "roberta-7m"  # the identical run lifts its mean
    fams = A.compare_families(df)
    assert list(fams["task"]) == ["defect", "clone", "all"]
    d = fams.iloc[0]
    assert d["n_pairs"] == len(STUDENTS) * len(TEACHERS) * len(SEEDS)
    assert d["delta"] > 0  # PKD is one sample better than KD on defect, more for the identical run


def test_rank_methods(df: pd.DataFrame) -> None:
    ranking = A.rank_methods(df)
    k = len(METHODS)
    # (task, student) blocks: FT once, each KD method averaged over the teachers (FT is not counted per teacher)
    assert ranking.n_blocks == len(TASKS) * len(STUDENTS) and ranking.n_incomplete == 0
    np.testing.assert_allclose(ranking.block_ranks.sum(axis=1), k * (k + 1) / 2)
    assert ranking.ranks.sum() == pytest.approx(k * (k + 1) / 2)
    defect = ranking.block_ranks.xs("defect", level="task")
    assert (defect["pkd"] == 1).all() and (defect["kd"] == 2).all() and (defect["ft"] == 3).all()
    scores = ranking.block_scores
    expected = friedmanchisquare(*[scores[m].to_numpy() for m in scores.columns])
    assert ranking.friedman_p == pytest.approx(expected.pvalue)
    assert ranking.nemenyi is not None and ranking.nemenyi.shape == (k, k)


def test_rank_methods_few_blocks_gives_ranks_and_nan_p(df: pd.DataFrame) -> None:
    one = df[(df["task"] == "defect") & df["student"].isin(["roberta-7m", "none"])]
    one = one[one["teacher"].isin(["unixcoder", "none"])]
    ranking = A.rank_methods(one)
    assert ranking.n_blocks == 1
    assert list(ranking.ranks.index) == ["pkd", "kd", "ft"]
    assert np.isnan(ranking.friedman_p) and ranking.nemenyi is None and "no Friedman" in ranking.note


def test_compare_architectures(df: pd.DataFrame) -> None:
    arch = A.compare_architectures(df)
    assert len(arch) == len(TASKS) * (1 + 2 * len(TEACHERS)) * len(SIZE_GAIN)
    assert set(arch["size"]) == {"7m", "tiny"}
    assert (
        arch["roberta_student"].str.split("-").str[1] == arch["bigru_student"].str.split("-").str[1]
    ).all()
    d = arch[(arch["task"] == "defect") & (arch["method"] == "ft")]
    np.testing.assert_allclose(d["delta"], -ARCH_GAIN["bigru"] / N_TEST)
    svp = A.score_vs_params(df)
    assert len(svp) == len(TASKS) * len(STUDENTS) * (1 + 2 * len(TEACHERS))
    assert (svp["n"] == 3).all()


def test_tables_of_a_study_without_kd_are_empty_not_errors(df: pd.DataFrame) -> None:
    ft_only = df[(df["stage"] != "student") | (df["method"] == "ft")]
    assert A.compare_to_ft(ft_only).empty and A.compare_teachers(ft_only).empty
    assert A.teachers_side_by_side(ft_only).empty and A.compare_families(ft_only).empty
    assert A.rank_methods(ft_only).ranks.empty
    assert len(A.compare_architectures(ft_only)) == len(TASKS) * len(SIZE_GAIN)  # FT alone still compares
    passes = A.efficiency(ft_only).passes
    assert (passes["n_kd_trials"] == 0).all() and (passes["n_cache_runs"] > 0).all()
    with pytest.raises(A.NotApplicable, match="no student runs"):
        A.figure2(df[df["stage"] != "student"], Path("unused.png"))


# ------------------------------------------------------------------------------ efficiency, behaviour


def test_efficiency(df: pd.DataFrame, tmp_path: Path) -> None:
    bench = {
        "methods": {
            m: {
                "ft_s": 10.0,
                "cached_s": 12.0,
                "online_s": 40.0,
                "teacher_s_cached": 0.4,
                "cached_over_ft": 1.2,
                "online_over_ft": 4.0,
            }
            for m in ("kd", "pkd")
        },
        "teacher_passes": 1,
        "cache_bytes": 123,
        "device": "cpu",
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    eff = A.efficiency(df, path)
    for method, ratio in (("kd", 1.2), ("pkd", 1.5)):
        np.testing.assert_allclose(eff.cost.loc[eff.cost["method"] == method, "cached_over_ft"], ratio)
    n_kd = len(STUDENTS) * 2 * len(SEEDS)
    np.testing.assert_allclose(eff.cost["cache_build_s_per_trial"], 12.0 / n_kd)
    per = eff.passes[eff.passes["task"] != "all"].set_index(["teacher", "task"])
    assert len(per) == len(TASKS) * len(TEACHERS)
    assert (per["n_kd_trials"] == n_kd).all() and (per["n_cache_runs"] == 1).all()
    assert per.loc[FOUND_CACHE, "cached_passes"] == 0  # its cache was found, not built
    assert (per.drop(index=[FOUND_CACHE])["cached_passes"] == 1).all()
    assert (per["online_passes"] == n_kd * EPOCHS).all()
    assert (per["online_steps"] == n_kd * STEPS).all()  # the logged steps win over the estimate
    total = eff.passes[eff.passes["task"] == "all"].iloc[0]
    assert total["n_cache_runs"] == 4 and total["cached_passes"] == 3
    assert total["online_passes"] == 4 * n_kd * EPOCHS and total["passes_saved"] == 4 * n_kd * EPOCHS - 3
    assert eff.recorded_teacher_passes == 3
    tp = eff.throughput.set_index(["task", "student", "teacher"])
    assert tp.loc[("defect", "roberta-7m", "unixcoder"), "speedup"] == pytest.approx(8.0)
    assert eff.online is not None and list(eff.online["method"]) == ["kd", "pkd"]
    assert eff.online["online_over_ft"].tolist() == [4.0, 4.0]
    assert eff.bench == {"teacher_passes": 1, "cache_bytes": 123, "device": "cpu"}
    assert A.efficiency(df).online is None


def test_efficiency_estimates_steps_then_reports_passes_only(df: pd.DataFrame) -> None:
    n_kd = len(STUDENTS) * 2 * len(SEEDS)
    per = A.efficiency(df.assign(steps=np.nan)).passes
    per = per[per["task"] != "all"]
    assert (per["online_steps"] == n_kd * EPOCHS * (TRAIN_SAMPLES // BATCH)).all() and (
        per["note"] == ""
    ).all()
    per = A.efficiency(df.assign(steps=np.nan, train_samples=np.nan)).passes
    assert per["online_steps"].isna().all() and (per.loc[per["task"] != "all", "online_passes"] > 0).all()
    assert per.loc[per["task"] != "all", "note"].str.contains("passes only").all()


def test_agreement(df: pd.DataFrame, store: Store) -> None:
    agr = A.agreement(df, store.client)
    # KD runs once, FT runs once per teacher of their task
    assert len(agr) == N_STUDENT_RUNS + len(TASKS) * len(STUDENTS) * len(SEEDS) * (len(TEACHERS) - 1)
    assert (agr["note"] == "").all() and (agr["n_samples"] == N_TEST).all()
    task, student, teacher, method, seed = IDENTICAL
    key = dict(task=task, student=student, teacher=teacher, method=method, seed=seed)
    ident = agr.loc[(agr[list(key)] == pd.Series(key)).all(axis=1)].iloc[0]
    assert ident["agreement"] == 1.0 and ident["accuracy"] == ident["teacher_accuracy"] == 0.66
    # an arbitrary KD run, recomputed from the arrays the fixture logged
    k = ("clone", "bigru-tiny", "modernbert", "kd", 2)
    row = agr[(agr["task"] == "clone") & (agr["student"] == "bigru-tiny") & (agr["teacher"] == "modernbert")]
    row = row[(row["method"] == "kd") & (row["seed"] == 2)].iloc[0]
    pred, tp, y = store.preds[k], store.teacher_preds[("modernbert", "clone")], store.labels["clone"]
    ft = store.preds[("clone", "bigru-tiny", "none", "ft", 2)]
    mask = ft != tp
    assert row["agreement"] == pytest.approx((pred == tp).mean())
    assert row["n_ft_disagreed"] == mask.sum()
    assert row["acc_on_ft_disagreed"] == pytest.approx((pred[mask] == y[mask]).mean())
    assert row["agree_on_ft_disagreed"] == pytest.approx((pred[mask] == tp[mask]).mean())
    # FT against each teacher: on the samples where it disagreed with the teacher it never agrees
    assert (agr.loc[agr["method"] == "ft", "agree_on_ft_disagreed"] == 0).all()
    summary = A.agreement_summary(agr)
    kd_rows = summary["method"] != "ft"
    assert (summary.loc[kd_rows, "agreement_minus_ft"] > 0).all()  # KD students follow the teacher
    assert (summary.loc[summary["method"] == "ft", "agreement_minus_ft"] == 0).all()


# --------------------------------------------------------------------------------- figure, notebooks


def test_paper_figure2_table() -> None:
    p = A.PAPER_FIGURE2
    assert len(p) == 3 * 2 * 5 * 3
    assert (
        p.set_index(["task", "arch", "size", "method"]).loc[("clone", "roberta", "30M", "ckd"), "score"]
        == 94.1
    )
    assert (
        p.set_index(["task", "arch", "size", "method"]).loc[("exception", "bigru", "1.5M", "ft"), "score"]
        == 50.4
    )
    assert set(A.PAPER_TEACHER_SCORES["score"]) == {65.2, 94.1, 82.3}


def test_beside_paper_matches_sizes(df: pd.DataFrame) -> None:
    renamed = df.replace({"roberta-7m": "roberta-30m"})
    table = A.beside_paper(renamed)
    cell = table[(table["task"] == "defect") & (table["arch"] == "roberta") & (table["size"] == "30M")]
    ours = cell.set_index("method")["ours"]
    assert ours["ft"] == pytest.approx(
        100 * _seed_scores(df, task="defect", student="roberta-7m", method="ft").mean()
    )
    assert np.isnan(ours["ckd"])  # a method this study did not run
    # defect/clone x ft/kd/pkd for roberta at 30M and bigru at 7M; the tiny students match no paper size
    assert table["ours"].notna().sum() == 2 * 3 * 2
    assert set(table.loc[table["ours"].notna(), "size"]) == {"30M", "7M"}


@pytest.mark.parametrize("paper", [False, True])
def test_figure2_writes_png(df: pd.DataFrame, tmp_path: Path, paper: bool) -> None:
    out = A.figure2(df, tmp_path / "sub" / "figure2.png", paper=paper)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_notebooks_are_stripped_and_generated() -> None:
    sys.path.insert(0, str(A.NOTEBOOK_DIR))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(A.NOTEBOOK_DIR))
    assert set(make_notebooks.NOTEBOOKS) == set(A.NOTEBOOKS)
    for name in A.NOTEBOOKS:
        nb = nbformat.read(A.NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.outputs == [] and c.execution_count is None for c in code), name
        assert nb == make_notebooks.build(name), f"{name} differs from make_notebooks.py: regenerate it"


def test_notebooks_execute_headless(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.stat().st_mtime_ns for p in A.NOTEBOOK_DIR.glob("*.ipynb")}
    monkeypatch.chdir(
        tmp_path
    )  # a relative --out, as the README's command gives: figures under it, not the kernel's cwd
    written = A.run_notebooks(Path("executed"), STUDY, store.uri)
    assert [p.name for p in written] == list(A.NOTEBOOKS)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), path.name
        text = json.dumps(outputs)
        assert f"study '{STUDY}'" in text, path.name  # it read the fixture study, not the default
    assert (tmp_path / "executed" / "figures" / "figure2.png").stat().st_size > 0
    assert {p: p.stat().st_mtime_ns for p in A.NOTEBOOK_DIR.glob("*.ipynb")} == before  # sources untouched


def test_run_notebooks_fails_loudly(store: Store, tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="no-such-study"):
        A.run_notebooks(tmp_path, "no-such-study", store.uri, ["02_rq2_teachers.ipynb"])
    assert (tmp_path / "02_rq2_teachers.ipynb").exists()  # the failed copy is kept for its traceback


# ------------------------------------------------------------------- trustworthy answers (issue 9)


def _with_baseline(df: pd.DataFrame, **baselines: float) -> pd.DataFrame:
    """The fixture's runs as if every run of each task had recorded this test_majority_baseline."""
    d = df.copy()
    for task, value in baselines.items():
        d.loc[d["task"] == task, "test_majority_baseline"] = value
    return A.mark_degenerate(d)


def test_runs_without_a_recorded_baseline_are_unknown_not_degenerate(df: pd.DataFrame) -> None:
    assert df["baseline"].isna().all() and not df["degenerate"].any()
    # one run that recorded it gives its task's baseline to the runs that did not (one test split per study)
    d = df.copy()
    first = d.index[(d["task"] == "defect") & (d["stage"] == "student")][0]
    d.loc[first, "test_majority_baseline"] = 0.53
    d = A.mark_degenerate(d)
    assert (d.loc[d["task"] == "defect", "baseline"] == 0.53).all() and d.loc[
        d["task"] == "clone", "baseline"
    ].isna().all()


def test_degenerate_runs_are_flagged_and_left_out_with_a_count(df: pd.DataFrame) -> None:
    # defect FT of roberta-tiny scores 0.51-0.53, bigru-tiny 0.52-0.54: at or below a 0.53 baseline
    d = _with_baseline(df, defect=0.53)
    s = A.student_runs(d)
    bad = s[s["degenerate"]]
    assert set(zip(bad["student"], bad["method"], bad["seed"])) == {
        ("roberta-tiny", "ft", 0),
        ("roberta-tiny", "ft", 1),
        ("roberta-tiny", "ft", 2),
        ("bigru-tiny", "ft", 0),
        ("bigru-tiny", "ft", 1),
    }
    summary = A.degenerate_summary(d)
    row = summary[
        (summary["stage"] == "student") & (summary["task"] == "defect") & (summary["teacher"] == "none")
    ]
    assert row["degenerate"].iloc[0] == 5 and row["baseline"].iloc[0] == 0.53
    rq1 = A.compare_to_ft(d)
    r = rq1[(rq1["task"] == "defect") & (rq1["student"] == "roberta-tiny")]
    assert (r["n_degenerate"] == 3).all() and (r["ft_n"] == 0).all() and r["ft_mean"].isna().all()
    r = rq1[(rq1["task"] == "defect") & (rq1["student"] == "bigru-tiny")]
    assert (r["n_degenerate"] == 2).all() and (r["ft_n"] == 1).all()
    assert r["ft_mean"].iloc[0] == pytest.approx(0.54)  # the one seed left
    ranking = A.rank_methods(d)
    assert ranking.n_degenerate == 5
    assert ranking.n_incomplete == len(TEACHERS)  # (defect, roberta-tiny, teacher) blocks lost FT
    svp = A.score_vs_params(d)
    ft = svp[(svp["task"] == "defect") & (svp["student"] == "roberta-tiny") & (svp["method"] == "ft")]
    assert ft["n"].iloc[0] == 0 and ft["n_degenerate"].iloc[0] == 3 and np.isnan(ft["mean"].iloc[0])
    fam = A.family_summary(d)
    none = fam[(fam["task"] == "defect") & (fam["method_family"] == "none")]
    assert (none["n_excluded"] == 5).all()


def test_not_testable_below_the_resolvable_n() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=6), rng.normal(size=6) + 2.0
    five = A.paired_comparison(pd.Series(x[:5]), pd.Series(y[:5]))
    assert np.isnan(five["p_wilcoxon"]) and five["test"] == "not testable (n = 5)"
    assert five["cliffs_delta"] == pytest.approx(-1.0)  # 5 vs 5 scores: an effect size it can resolve
    six = A.paired_comparison(pd.Series(x), pd.Series(y))
    assert six["p_wilcoxon"] == pytest.approx(wilcoxon(x, y).pvalue) and six["p_wilcoxon"] < 0.05
    ties = A.paired_comparison(pd.Series([1.0] * 4 + [2.0] * 4), pd.Series([1.0] * 4 + [3.0] * 4))
    assert ties["test"] == "not testable (n = 4 nonzero of 8 pairs)"
    three = A.paired_comparison(pd.Series([1.0, 2, 3]), pd.Series([4.0, 5, 6]))
    assert np.isnan(three["cliffs_delta"]) and "not testable (n = 3 vs 3)" in three["note"]


def test_pooled_row_is_its_own_holm_family(df: pd.DataFrame) -> None:
    fams = A.compare_families(df)
    per_task, pooled = fams[fams["family"] == "per task"], fams[fams["family"] == "pooled"]
    assert list(per_task["task"]) == ["defect", "clone"] and list(pooled["task"]) == ["all"]
    np.testing.assert_allclose(per_task["p_holm"], A.holm(per_task["p_wilcoxon"]))
    assert pooled["p_holm"].iloc[0] == pytest.approx(pooled["p_wilcoxon"].iloc[0])  # a family of one
    assert all(v.startswith(("significant (p = ", "not significant (p = ")) for v in fams["verdict"])


def test_retention_is_undefined_for_a_teacher_at_its_baseline(df: pd.DataFrame) -> None:
    d = _with_baseline(df, defect=0.62)  # modernbert's defect teacher scores 0.62: no better than a constant
    t = A.teacher_scores(d).set_index(["teacher", "task"])
    assert t.loc[("modernbert", "defect"), "degenerate"] and not t.loc[("unixcoder", "defect"), "degenerate"]
    r = A.retention(d)
    mb = r[(r["teacher"] == "modernbert") & (r["task"] == "defect")]
    assert len(mb) and mb["retention"].isna().all()
    assert (mb["retention_note"] == "undefined: teacher at or below its majority baseline").all()
    assert r.loc[(r["teacher"] == "unixcoder"), "retention"].notna().all()
    fam = A.family_summary(d)
    mbf = fam[(fam["teacher"] == "modernbert") & (fam["task"] == "defect")]
    assert mbf["retention_mean"].isna().all() and (mbf["n_runs"] == 0).all()
    # a teacher scoring 0 (clone F1 of a constant negative teacher) gives NaN, never inf
    z = df.copy()
    z.loc[(z["stage"] == "teacher_finetune") & (z["task"] == "clone"), "primary"] = 0.0
    rz = A.retention(A.mark_degenerate(z))
    assert not np.isinf(rz["retention"]).any() and rz.loc[rz["task"] == "clone", "retention"].isna().all()


def test_retention_keeps_kd_runs_whose_teacher_run_is_missing(df: pd.DataFrame) -> None:
    # the modernbert defect teacher run failed (no finished row): its KD students stay, counted as excluded
    d = df[
        ~((df["stage"] == "teacher_finetune") & (df["teacher"] == "modernbert") & (df["task"] == "defect"))
    ]
    r = A.retention(d)
    kd = r[(r["teacher"] == "modernbert") & (r["task"] == "defect")]
    n_kd = len(
        student_rows := d[
            (d["stage"] == "student") & (d["teacher"] == "modernbert") & (d["task"] == "defect")
        ]
    )
    assert n_kd and len(kd) == n_kd and (kd["method"] != "ft").all()
    assert kd["retention"].isna().all() and not kd["teacher_degenerate"].any()
    assert (kd["retention_note"] == "undefined: no finished fine-tune run of this teacher").all()
    fam = A.family_summary(d)
    mbf = fam[(fam["teacher"] == "modernbert") & (fam["task"] == "defect")]
    assert (mbf["n_runs"] == 0).all() and mbf["n_excluded"].sum() == len(student_rows)
    assert r.loc[r["teacher"] == "unixcoder", "retention"].notna().all()


def test_figure2_has_a_panel_row_per_teacher_with_caption_dodge_and_baseline(df: pd.DataFrame) -> None:
    d = _with_baseline(df, defect=0.53, clone=0.40)
    fig = A.build_figure2(d, study="analysis-fixture")
    axes = fig.axes
    assert len(axes) == len(TEACHERS) * len(TASKS) * 2  # (teacher, task) rows x (roberta, bigru) columns
    titles = [ax.get_title() for ax in axes]
    for teacher in TEACHERS:
        assert sum(f"teacher {teacher} |" in t for t in titles) == len(TASKS) * 2
    assert all(t.startswith("analysis-fixture | teacher ") and "n = " in t for t in titles)
    defect = next(ax for ax, t in zip(axes, titles) if "| defect / roberta" in t)
    low, top = defect.get_ylim()  # the y axis starts at the baseline (percent), its dotted line just inside
    assert 53.0 - 0.03 * (top - 53.0) < low < 53.0
    assert "3 degenerate" in defect.get_title()
    # methods at the same student size sit at different x, so overlapping means stay visible
    big = [max(c.lines[0].get_xdata()) for c in defect.containers]  # each method's point at 7M parameters
    assert len(big) == len(METHODS) and len(set(big)) == len(big)
    assert all(abs(np.log10(x / 7_100_000)) < 0.1 for x in big)
    one = A.build_figure2(d, teacher="unixcoder", study="s")
    assert len(one.axes) == len(TASKS) * 2


def test_a_study_whose_every_run_is_degenerate_still_answers(store: Store, tmp_path: Path) -> None:
    """CI once drew a smoke study whose KD students all predicted one class: every table must still have its rows
    (means NaN, counts saying why) and every notebook must run, not fail on an empty table."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(store.root, root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY)
    now = int(time.time() * 1000)
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        if run.data.tags.get("stage") in ("student", "teacher_finetune"):  # a baseline no run beats
            client.log_batch(run.info.run_id, metrics=[Metric("test_majority_baseline", 0.999, now, 0)])
    d = A.load_runs(STUDY, uri)
    s = A.student_runs(d)
    assert len(s) == N_STUDENT_RUNS and s["degenerate"].all()
    side = A.teachers_side_by_side(d)
    assert len(side) == len(TASKS) * len(STUDENTS) * 2  # (kd, pkd) rows kept, their means undefined
    assert side[list(TEACHERS)].isna().all().all() and (side["n_degenerate"] == 2 * len(SEEDS)).all()
    rq1 = A.compare_to_ft(d)
    assert len(rq1) and rq1["p_holm"].isna().all()
    assert not rq1["verdict"].str.contains("significant").any()
    written = A.run_notebooks(tmp_path / "executed", STUDY, uri)
    assert [p.name for p in written] == list(A.NOTEBOOKS)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        assert outputs, path.name


def test_an_ft_only_pilot_gets_every_notebook_that_applies(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An FT-only study (docs/OWN_DATA.md's first check) has no KD-vs-FT comparison: RQ1 says it does not apply
    and the command still writes every other notebook (the first notebook used to stop the command)."""
    from orchestrator.analysis import cli

    client = store.client
    exp = client.create_experiment("ft-pilot", artifact_location=(tmp_path / "artifacts").as_uri())
    source = client.get_experiment_by_name(STUDY).experiment_id
    for run in client.search_runs([source], "tags.stage = 'student' and tags.method = 'ft'"):
        copy = client.create_run(exp, tags={**run.data.tags, "study": "ft-pilot"})
        now = int(time.time() * 1000)
        client.log_batch(
            copy.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in run.data.metrics.items()],
            params=[Param(k, v) for k, v in run.data.params.items()],
        )
        client.set_terminated(copy.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    assert cli.main(["notebooks", "--study", "ft-pilot", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "not applicable to this study: 01_rq1_effectiveness.ipynb: no KD-vs-FT comparison" in out
    executed = {line.rsplit("/", 1)[-1] for line in out.splitlines() if line.startswith("executed ")}
    assert {"04_rq4_students.ipynb", "figure2.ipynb", "07_tuning.ipynb"} <= executed
    assert "01_rq1_effectiveness.ipynb" not in executed
    assert len(executed) + out.count("not applicable to this study") == len(A.NOTEBOOKS)
    assert (tmp_path / "out" / "01_rq1_effectiveness.ipynb").is_file()  # with the reason in its last cell
    from nbclient.exceptions import CellExecutionError

    broken = CellExecutionError("Traceback ...", "KeyError", "'primary'")
    broken.notebook = "03_rq3_methods.ipynb"
    other = CellExecutionError("Traceback ...", "ValueError", "empty")
    other.notebook = "05_efficiency.ipynb"
    with pytest.raises(
        CellExecutionError
    ) as err:  # any other failure still fails the command, naming the rest
        cli.settle([broken, other])
    assert err.value is broken and broken.also == ["05_efficiency.ipynb"]
