"""``python -m orchestrator.bench diagnose``: the per-term loss breakdown behind docs/METHODS.md's figures, at
initialisation and during the trainer's own loop, on tiny real models and real local data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.bench.diagnose import main_for_tests

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_at_init_the_terms_pull_as_the_docs_say() -> None:
    r = main_for_tests(
        ["--mode", "init", "--student", "roberta-tiny", "--max-length", "24", "--margins", "1,4"]
    )
    rows = {(row["run"], row["margin"]): row["terms"] for row in r["rows"]}
    assert len(rows) == 9 * 2 and r["lengths"][1] == 24
    ft = rows[("FT", 1.0)]["hard"]["grad_norm"]
    kd10 = rows[("KD T 10 (default, no T^2)", 1.0)]["soft"]
    kd10_sq = rows[("KD T 10 with T^2", 1.0)]["soft"]
    # T 10 without T^2: near ln 2 and a gradient a small fraction of FT's; T^2 scales value and gradient by 100
    assert kd10["value"] == pytest.approx(math.log(2), abs=0.01) and kd10["grad_norm"] < ft / 20
    assert kd10_sq["value"] == pytest.approx(100 * kd10["value"], rel=1e-4)
    assert kd10_sq["grad_norm"] == pytest.approx(100 * kd10["grad_norm"], rel=1e-3)
    # DIST with two classes: the inter-class Pearson of 2-vectors is +-1, so that term has no gradient
    dist = rows[("DIST (T 1)", 1.0)]
    assert dist["inter"]["grad_norm"] < 1e-3 * dist["intra"]["grad_norm"]
    # the margin moves the logit terms only; CKD's relations and PKD's feature term do not read the logits
    ckd1, ckd4 = (
        rows[("CKD defaults (beta = gamma = 10)", 1.0)],
        rows[("CKD defaults (beta = gamma = 10)", 4.0)],
    )
    assert ckd1["wr_dist"] == ckd4["wr_dist"] and ckd1["soft"]["grad_norm"] < ckd4["soft"]["grad_norm"]
    readme = rows[("CKD, authors' README (beta = gamma = 1)", 1.0)]
    assert readme["wr_dist"]["value"] == pytest.approx(
        ckd1["wr_dist"]["value"] / 10, rel=1e-5
    )  # beta 10 -> 1
    pkd, old = rows[("PKD (mean over layers)", 1.0)], rows[("PKD, old sum (= beta 30)", 1.0)]
    assert old["feature"]["value"] == pytest.approx(3 * pkd["feature"]["value"], rel=1e-5)


def test_during_training_every_n_steps(local_data: Path, tiny_teacher: Path) -> None:
    common = ["--task", "exception", "--data", str(local_data), "--student", "roberta-tiny", "--seed", "0"]
    common += ["--lr", "1e-3", "--batch-size", "16", "--max-length", "64", "--epochs", "1", "--steps", "7"]
    r = main_for_tests(
        ["--mode", "train", *common, "--every", "3", "--method", "ckd", "--teacher", str(tiny_teacher)]
        + ["--param", "beta=1", "--param", "gamma=1", "--hole-window", "6,2"]
    )
    assert [row["step"] for row in r["rows"]] == [0, 3, 6] and r["steps"] == 7
    for row in r["rows"]:
        assert set(row["terms"]) == {
            "soft",
            "wr_dist",
            "wr_angle",
            "ltr_dist",
            "ltr_angle",
            "total",
        }  # alpha 1: no label term
        assert row["terms"]["soft"]["grad_norm"] > 0 and 1 <= row["classes"] <= 16
        assert 0.0 <= row["batch_accuracy"] <= 1.0
    assert {"accuracy", "score", "majority_baseline"} <= set(r["test"])


def test_recording_does_not_change_the_run(local_data: Path) -> None:
    """The breakdowns take gradients of their own; the run they watch trains exactly as an unwatched one."""
    from orchestrator.train.trainer import TrainConfig
    from orchestrator.train.trial import TrialConfig, run_trial

    args = ["--task", "exception", "--data", str(local_data), "--student", "roberta-tiny", "--method", "ft"]
    args += ["--lr", "1e-3", "--batch-size", "16", "--max-length", "64", "--epochs", "1", "--every", "2"]
    watched = main_for_tests(["--mode", "train", *args, "--device", "cpu"])
    plain = run_trial(
        TrialConfig(
            task="exception",
            student="roberta-tiny",
            method="ft",
            data=str(local_data),
            max_length=64,
            train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, device="cpu"),
            cache_dir=str(local_data.parent / "diag-cache"),
        )
    )
    assert len(watched["rows"]) == math.ceil(plain.steps / 2)
    assert watched["test"] == pytest.approx(plain.test)


def test_during_training_on_a_labelled_part(local_data: Path, tiny_teacher: Path) -> None:
    """``--labelled N``: the transfer check's transfer-set arm; batches without a labelled sample give a zero
    label term, the teacher's term still pulls."""
    args = ["--task", "exception", "--data", str(local_data), "--student", "roberta-tiny", "--method", "kd"]
    args += ["--lr", "1e-3", "--batch-size", "8", "--max-length", "48", "--epochs", "1", "--steps", "6"]
    args += ["--teacher", str(tiny_teacher), "--param", "label_weight=0.5", "--every", "1", "--labelled", "2"]
    r = main_for_tests(["--mode", "train", *args])
    assert r["labelled"] == 2 and r["steps"] == 6
    hard = [row["terms"]["hard"]["value"] for row in r["rows"]]
    assert 0.0 in hard  # at most two batches hold one of the two labelled samples
    assert all(row["terms"]["soft"]["grad_norm"] > 0 for row in r["rows"])
    # Batch accuracy is over the labelled samples only: an unlabelled one (-100) is neither right nor wrong, so a
    # batch without labels has none (it used to count every unlabelled sample as wrong).
    assert sum(row["batch_labelled"] for row in r["rows"]) <= 2
    for row in r["rows"]:
        if row["batch_labelled"] == 0:
            assert row["batch_accuracy"] is None
        else:
            assert row["batch_accuracy"] in (0.0, 1.0, 0.5)
        assert 0.0 <= row["teacher_agreement"] <= 1.0
        val = row["val"]  # the whole validation split at every breakdown: its spread and accuracy
        assert 1 <= val["classes"] and val["labelled"] > 0 and 0.0 <= val["accuracy"] <= 1.0
        assert 0.0 < val["top_share"] <= 1.0


def test_pkd_feature_alignment(local_data: Path, tiny_teacher: Path) -> None:
    """PKD's rows say how alike the batch's vectors are on each side of the feature term (1: one direction)."""
    import torch

    from orchestrator.bench.diagnose_signals import mean_pairwise_cos

    assert mean_pairwise_cos(torch.ones(4, 3)) == pytest.approx(1.0)
    assert mean_pairwise_cos(torch.eye(3)) == pytest.approx(0.0)
    assert mean_pairwise_cos(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)
    args = ["--task", "exception", "--data", str(local_data), "--student", "roberta-tiny", "--method", "pkd"]
    args += ["--lr", "1e-3", "--batch-size", "8", "--max-length", "48", "--epochs", "1", "--steps", "2"]
    r = main_for_tests(["--mode", "train", *args, "--teacher", str(tiny_teacher), "--every", "1"])
    for row in r["rows"]:
        align = row["feature_alignment"]
        # roberta-tiny has 2 layers: student layer 1 is matched to teacher layer round(1 * T / 2)
        assert len(align) == 4 and all(-1.0 - 1e-6 <= v <= 1.0 + 1e-6 for v in align.values())
        assert {k.split()[0] for k in align} == {"s", "t", "Pt", "s_vs_Pt"}
