"""No verdict built on survivors (analysis audit 2026-12-07, findings 1, 2, 5, 9, 10): a comparison where a side
has seeds at its majority baseline, or seeds that diverged or never finished, gives no verdict; the ranking counts
FT once per (task, student) block; the RQ1 summary says in which direction a result is significant; a ranking
whose blocks all tie is not testable. Synthetic frames in ``load_runs``' shape (tests/test_analysis_levels.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare, wilcoxon

from orchestrator import analysis as A
from orchestrator.analysis.tables import effectiveness_summary
from tests.test_analysis_levels import frame, student

SEEDS = range(12)


def _collapsing_kd() -> pd.DataFrame:
    """KD at the majority baseline (0.5) on seeds 0-5 and 0.01 above FT on seeds 6-11 (FT 0.60-0.71)."""
    rows = []
    for seed in SEEDS:
        ft = 0.60 + 0.01 * seed
        rows.append(student("defect", "roberta-7m", "ft", seed, ft))
        rows.append(student("defect", "roberta-7m", "kd", seed, 0.5 if seed < 6 else ft + 0.01, "unixcoder"))
    return frame(rows)


def test_a_method_that_collapses_on_half_its_seeds_gets_no_verdict() -> None:
    df = _collapsing_kd()
    [row] = A.compare_to_ft(df).to_dict("records")
    # the survivors alone would read "significant": KD beats FT on all six of them
    assert wilcoxon([0.01] * 5 + [0.0100001]).pvalue < 0.05 and row["delta"] == pytest.approx(0.01)
    assert row["verdict"] == "no verdict: KD 6 at the majority baseline of 12 seeds"
    assert np.isnan(row["p_wilcoxon"]) and np.isnan(row["p_holm"]) and row["n_degenerate"] == 6
    summary = effectiveness_summary(df).reset_index().iloc[0]
    assert summary["no_verdict"] == 1 and summary["testable"] == 0 and summary["significant"] == 0
    # every seed above the baseline: the same gain is tested and significant, in KD's favour
    clean = df.assign(primary=df["primary"].where(df["primary"] > 0.5, df["primary"] + 0.2), degenerate=False)
    [row] = A.compare_to_ft(clean).to_dict("records")
    assert row["verdict"].startswith("significant")
    summary = effectiveness_summary(clean).reset_index().iloc[0]
    assert (summary["significant_better"], summary["significant_worse"], summary["no_verdict"]) == (1, 0, 0)


def test_a_significantly_worse_method_is_counted_as_worse() -> None:
    rows = []
    for seed in SEEDS:
        rows.append(student("defect", "roberta-7m", "ft", seed, 0.70 + 0.001 * seed))
        rows.append(student("defect", "roberta-7m", "kd", seed, 0.60 + 0.002 * seed, "unixcoder"))
    summary = effectiveness_summary(frame(rows)).reset_index().iloc[0]
    assert (summary["significant"], summary["significant_better"], summary["significant_worse"]) == (1, 0, 1)
    assert summary["kd_better"] == 0


def test_seeds_that_diverged_or_never_finished_withhold_the_verdict() -> None:
    rows = []
    for seed in SEEDS:  # KD 0.01 above FT on every seed
        rows.append(student("defect", "roberta-7m", "ft", seed, 0.60 + 0.01 * seed))
        rows.append(student("defect", "roberta-7m", "kd", seed, 0.61 + 0.01 * seed, "unixcoder"))
    df = frame(rows).assign(status="FINISHED", diverged=False)
    failed = df[(df["method"] == "kd") & (df["seed"] < 2)].assign(
        primary=np.nan, status="FAILED", diverged=True
    )
    running = df[(df["method"] == "ft") & (df["seed"] == 2)].assign(primary=np.nan, status="RUNNING")
    lone = df[(df["method"] == "ft") & (df["seed"] == 0)].assign(seed=99, primary=np.nan, status="FAILED")
    finished = df[~df.index.isin([*failed.index, *running.index])]
    together = pd.concat([finished, failed, running, lone], ignore_index=True)
    [row] = A.compare_to_ft(together).to_dict("records")
    # a seed only FT ever ran (99) is in no pair: it withholds nothing
    assert row["verdict"] == "no verdict: KD 2 diverged of 12 seeds; FT 1 not finished of 12 seeds"
    assert row["kd_n"] == 10 and row["ft_n"] == 11
    [row] = A.compare_to_ft(pd.concat([df, lone], ignore_index=True)).to_dict("records")
    assert row["verdict"].startswith("significant")


def test_a_method_whose_every_seed_diverged_keeps_its_row_with_no_verdict() -> None:
    """Rows come from finished runs: a configuration none of whose seeds finished (every tuning sample or every
    final diverged) had no row at all, so the method that fails hardest left the comparison."""
    rows = []
    for seed in range(4):
        rows.append(student("defect", "roberta-7m", "ft", seed, 0.60 + 0.01 * seed))
        rows.append(student("defect", "roberta-7m", "kd", seed, 0.61 + 0.01 * seed, "unixcoder"))
        rows.append(student("defect", "roberta-7m", "pkd", seed, 0.62 + 0.01 * seed, "unixcoder"))
    df = frame(rows).assign(status="FINISHED", diverged=False)
    pkd = df["method"] == "pkd"
    df.loc[pkd, ["primary", "status", "diverged"]] = [np.nan, "FAILED", True]
    table = A.compare_to_ft(df).set_index("method")
    assert list(table.index) == ["kd", "pkd"]
    assert table.loc["pkd", "verdict"] == "no verdict: PKD 4 diverged of 4 seeds"
    assert table.loc["pkd", "kd_n"] == 0 and np.isnan(table.loc["pkd", "p_holm"])
    assert table.loc["pkd", "method_family"] == df.loc[pkd, "method_family"].iloc[0]


def _two_teachers() -> pd.DataFrame:
    """Two teachers, three tasks, one student, four seeds: pkd > kd > ft in every block."""
    rows = []
    for task in ("defect", "clone", "exception"):
        for seed in range(4):
            rows.append(student(task, "roberta-7m", "ft", seed, 0.60 + 0.01 * seed))
            for i, t in enumerate(("modernbert", "unixcoder")):
                rows.append(student(task, "roberta-7m", "kd", seed, 0.65 + 0.01 * seed + 0.01 * i, t))
                rows.append(student(task, "roberta-7m", "pkd", seed, 0.70 + 0.01 * seed + 0.02 * i, t))
    return frame(rows)


def test_the_ranking_counts_ft_once_per_block() -> None:
    """Two teachers used to copy each FT score into two (task, student, teacher) blocks: six "independent" blocks
    where the data hold three FT measurements. Now a block is (task, student) and a KD method's score the mean
    over its teachers."""
    ranking = A.rank_methods(_two_teachers(), min_blocks=3)
    assert ranking.n_blocks == 3 and list(ranking.block_scores.columns) == ["ft", "kd", "pkd"]
    defect = ranking.block_scores.loc[("defect", "roberta-7m", "all")]
    assert defect["ft"] == pytest.approx(0.615) and defect["kd"] == pytest.approx(0.67)
    assert defect["pkd"] == pytest.approx(0.725)  # (0.715 + 0.735) / 2
    expected = friedmanchisquare(*[ranking.block_scores[m] for m in ("ft", "kd", "pkd")])
    assert ranking.friedman_p == pytest.approx(expected.pvalue)
    with pytest.raises(ValueError, match="not 'teacher'"):
        A.rank_methods(_two_teachers(), blocks=("task", "student", "teacher"))


def test_a_ranking_with_a_collapsed_block_or_all_ties_gives_no_verdict() -> None:
    df = _two_teachers()
    many = pd.concat(
        [df.assign(student=s, run_id=df["run_id"] + s) for s in ("roberta-7m", "bigru-7m", "bigru-tiny")],
        ignore_index=True,
    )
    ranking = A.rank_methods(many)
    assert ranking.n_blocks == 9 and ranking.verdict.startswith("significant") and ranking.nemenyi is not None
    one = (many["task"] == "clone") & (many["student"] == "bigru-7m") & (many["method"] == "kd")
    collapsed = A.load.mark_degenerate(
        many.assign(primary=many["primary"].mask(one & (many["seed"] == 0), 0.5))
    )
    ranking = A.rank_methods(collapsed)
    assert ranking.n_blocks == 8 and ranking.n_incomplete == 1 and ranking.nemenyi is None
    assert ranking.verdict.startswith("no verdict: 1 block(s) hold runs at the majority baseline")
    tied = many.assign(primary=0.7)
    ranking = A.rank_methods(tied)
    assert ranking.verdict == "not testable (n = every block tied)" and ranking.nemenyi is None


def test_the_teacher_architecture_and_family_comparisons_withhold_alike() -> None:
    rows = []
    for seed in SEEDS:
        for arch in ("roberta-7m", "bigru-7m"):
            for i, (t, m) in enumerate([("unixcoder", "kd"), ("modernbert", "kd"), ("unixcoder", "pkd")]):
                collapsed = arch == "bigru-7m" and (t, m) == ("unixcoder", "kd") and seed < 3
                rows.append(student("defect", arch, m, seed, 0.5 if collapsed else 0.7 + 0.01 * i, t))
    df = frame(rows)
    teachers = A.compare_teachers(df)
    bigru = teachers[(teachers["student"] == "bigru-7m") & (teachers["method"] == "kd")].iloc[0]
    assert bigru["verdict"] == "no verdict: unixcoder 3 at the majority baseline of 12 seeds"
    roberta = teachers[(teachers["student"] == "roberta-7m") & (teachers["method"] == "kd")].iloc[0]
    assert roberta["verdict"].startswith("significant")
    arch = A.compare_architectures(df)
    kd = arch[(arch["teacher"] == "unixcoder") & (arch["method"] == "kd")]
    assert kd["verdict"].iloc[0].startswith("no verdict: bigru-7m 3 at")
    fam = A.compare_families(df).iloc[0]
    assert fam["verdict"] == "no verdict: logit 3 at the majority baseline of 24 blocks"


def test_runs_on_two_data_folders_under_one_study_name_are_flagged() -> None:
    """An edited study re-run on other data under its name keeps the old runs of the seeds it did not re-run; the
    notebooks' setup line says so instead of pairing them silently."""
    rows = [
        student(
            "defect", "roberta-7m", m, seed, 0.6, "unixcoder", data_key="/data/v2" if seed < 3 else "/data/v1"
        )
        for seed in range(6)
        for m in ("ft", "kd")
    ]
    line = A.load.progress(frame(rows))
    assert "WARNING: its student runs read 2 data folders (/data/v1, /data/v2)" in line
    assert "WARNING" not in A.load.progress(frame([{**r, "data_key": "/data/v2"} for r in rows]))
