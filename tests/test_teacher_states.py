"""``python -m orchestrator.bench teacher-states``: per layer, what a teacher's [CLS] and token states carry per
sample (docs/METHODS.md: MiniLM's intermediate [CLS] is one outlier coordinate, so PKD's target is constant)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from orchestrator.bench.cli import main
from orchestrator.bench.teacher_states import layer_summary

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_an_outlier_coordinate_makes_every_cls_state_point_one_way() -> None:
    g = torch.Generator().manual_seed(0)
    varied = torch.randn(64, 32, generator=g)
    tokens, mask = torch.randn(64, 10, 32, generator=g), torch.ones(64, 10)
    plain = layer_summary(varied, tokens, mask)["cls"]
    assert abs(plain["pairwise_cos"]) < 0.05 and plain["mean_direction_share"] < 0.2
    outlier = varied.clone()
    outlier[:, 7] += 100.0  # one coordinate far above the rest in every sample, as MiniLM's dimension 99
    row = layer_summary(outlier, tokens, mask)
    assert row["cls"]["pairwise_cos"] > 0.99 and row["cls"]["mean_direction_share"] > 0.99
    assert row["cls"]["top_dim"] == 7 and row["cls"]["top_dim_share"] > 0.99
    # subtracting the mean leaves what varies: the same spread as without the outlier
    assert abs(row["cls"]["centred_pairwise_cos"]) < 0.05
    # the tokens do not carry it: that coordinate holds about 1/32 of their norm
    assert row["tokens"]["top_dim_share"] < 0.1


def test_command_reads_every_layer_of_a_real_teacher(
    local_data: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    out = tmp_path / "states.json"
    args = ["teacher-states", "--teacher", str(tiny_teacher), "--data", str(local_data), "--samples", "40"]
    assert main([*args, "--student", "roberta-tiny", "--max-length", "64", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["samples"] == 40 and list(r["layers"]) == ["0", "1", "2", "3"]  # embeddings + 3 layers
    # layer 0 is the embedding of <s> at position 0: the same vector for every input
    assert r["layers"]["0"]["cls"]["pairwise_cos"] == pytest.approx(1.0, abs=1e-4)
    # the token states differ within a sample (the command reads tokens, not [CLS] copies)
    assert all(row["tokens"]["within_sample_cos"] < 0.99 for row in r["layers"].values())
    assert r["pkd_layers"] and all(1 <= layer <= 3 for layer in r["pkd_layers"])


def test_a_missing_teacher_is_one_line(
    local_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["teacher-states", "--teacher", str(tmp_path / "none"), "--data", str(local_data)]
    assert main([*args, "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
