"""The transfer check's JSON contract (issue 20) and its verdict, from hand-made scores (no training: milliseconds).

Each criterion of a pass must be able to fail on its own: a teacher too close to FT, one method below FT, a KD
family whose interval reaches 0, a placebo that keeps more than half of a method's gain."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.bench.transfer import SIZES
from orchestrator.bench.transfer_report import KD_METHODS, results

SIZE = SIZES["cpu"]
FT = [0.40, 0.42, 0.44]


def _arms(gains: dict[str, float], placebo: dict[str, float]) -> dict[str, Any]:
    """Scores FT + gain (+ a small seed wobble so the intervals have width); the same for the same-labels arm."""
    wobble = (0.01, -0.01, 0.0)

    def arm(by: dict[str, float]) -> dict[str, Any]:
        return {
            m: {
                "params": SIZE.candidates[m][0],
                "scores": [f + by[m] + w for f, w in zip(FT, wobble)],
                "search": [],
            }
            for m in KD_METHODS
        }

    return {"transfer": arm(gains), "same_labels": arm({m: 0.0 for m in KD_METHODS}), "placebo": arm(placebo)}


def _results(gains: dict[str, float], placebo: dict[str, float], teacher_val: float = 0.60) -> dict[str, Any]:
    ft = {"params": {"lr": 5e-4}, "search": [], "scores": FT, "val_score": 0.45}
    teacher = {"name": "minilm", "score": 0.58, "val_score": teacher_val, "trained_on": 500}
    return results(SIZE, ft, _arms(gains, placebo), teacher, 0.17)


GOOD = {m: 0.08 for m in KD_METHODS}
NONE = {m: 0.0 for m in KD_METHODS}


def test_json_contract_keys() -> None:
    r = _results(GOOD, NONE)
    assert {"task", "teacher", "majority_baseline", "seeds", "ft", "methods", "verdict"} <= set(r)
    assert {"same_labels", "placebo", "kd_family"} <= set(r)
    assert {"score", "val_score", "advantage_over_ft_val"} <= set(r["teacher"])
    assert r["teacher"]["advantage_over_ft_val"] == pytest.approx(0.15)
    assert r["seeds"] == list(SIZE.seeds) and r["ft"]["scores"] == FT
    for arm in (r, r["same_labels"]):
        assert set(arm["methods"]) == set(KD_METHODS)
        for m in arm["methods"].values():
            assert {"mean_delta", "ci95", "p_value", "scores", "params"} <= set(m)
            assert len(m["scores"]) == len(SIZE.seeds) and len(m["ci95"]) == 2
    assert set(r["placebo"]["methods"]) == set(KD_METHODS)
    for p in r["placebo"]["methods"].values():
        assert {"mean_delta", "scores"} <= set(p)
        assert p["mean_delta"] == pytest.approx(0.0, abs=1e-12)  # against the same FT scores
        assert p["share_of_gain_lost"] == pytest.approx(1.0)
    assert r["methods"]["kd"]["mean_delta"] == pytest.approx(0.08)
    assert isinstance(r["verdict"]["passed"], bool)


def test_verdict_passes_only_when_every_criterion_holds() -> None:
    assert _results(GOOD, NONE)["verdict"]["passed"]
    # (1) the teacher 0.05 above FT on validation
    v = _results(GOOD, NONE, teacher_val=0.50)["verdict"]
    assert not v["teacher_advantage_ok"] and not v["passed"]
    # (2) one method below FT
    v = _results({**GOOD, "pkd": -0.01}, NONE)["verdict"]
    assert not v["every_method_gains"] and v["method_gains"]["pkd"] is False and not v["passed"]
    # (3) every method barely above FT: the family's interval reaches below 0
    v = _results({m: 0.002 for m in KD_METHODS}, NONE)["verdict"]
    assert v["every_method_gains"] and not v["kd_family_ci_above_zero"] and not v["passed"]
    # (4) CKD's placebo keeps 0.05 of its 0.08 gain (more than half)
    v = _results(GOOD, {**NONE, "ckd": 0.05})["verdict"]
    assert v["placebo_loses_half"] == {"kd": True, "dist": True, "pkd": True, "ckd": False}
    assert not v["placebo_loses_half_of_every_gain"] and not v["passed"]
    # a placebo that keeps less than half of the gain passes
    assert _results(GOOD, {**NONE, "kd": 0.035})["verdict"]["passed"]


def test_a_method_without_gain_cannot_pass_its_placebo_condition() -> None:
    r = _results({**GOOD, "dist": 0.0}, copy.deepcopy(NONE))
    assert r["placebo"]["methods"]["dist"]["share_of_gain_lost"] is None
    assert r["verdict"]["placebo_loses_half"]["dist"] is False and not r["verdict"]["passed"]


def test_markdown_table_names_each_criterion_and_the_verdict() -> None:
    from orchestrator.bench.transfer_report import markdown

    r = _results(GOOD, {**NONE, "ckd": 0.05})
    r["data"] = {"labelled": 500}
    md = markdown(r)
    assert "| transfer set | CKD |" in md and "| same labels | KD family |" in md
    assert "(4) each placebo loses >= half of its method's gain: FAIL" in md and "CKD FAIL" in md
    assert "(1) teacher >= FT + 0.10 on validation: PASS" in md and "**not passed**" in md


def test_the_report_command_prints_the_table_or_one_error_line(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from orchestrator.bench.transfer_report import main

    r = _results(GOOD, NONE)
    r["data"] = {"labelled": 500}
    path = tmp_path / "transfer.json"
    path.write_text(json.dumps(r))
    assert main([str(path)]) == 0
    assert "**passed**" in capsys.readouterr().out
    for content, expected in [
        ("{not json", "not a transfer check result (JSONDecodeError"),
        ("{}", "(KeyError"),
    ]:
        path.write_text(content)
        with pytest.raises(SystemExit) as err:
            main([str(path)])
        lines = capsys.readouterr().err.splitlines()
        assert err.value.code == 2 and len(lines) == 1 and expected in lines[0]
