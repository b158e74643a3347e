"""A study's ``tuning.space`` values are checked before anything starts, as ``method_params`` are (a tuning audit:
a negative lr, a temperature of 0 or "hot", a batch size of 0 or 7.3, a fractional CKD window and a space for a
method the study does not run all passed the checks and failed only inside trials, or tuned nothing)."""

from __future__ import annotations

import pytest
from conftest import write_study

from orchestrator.core.errors import StudyError
from orchestrator.design.study import load_spec
from orchestrator.design.validate import check_study

TUNING = {"searcher": "random", "scheduler": "none", "samples": 2, "max_epochs": 1}


def _choice(*values: object) -> dict:
    return {"type": "choice", "values": list(values)}


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            {"ft": {"lr": {"type": "uniform", "low": -0.1, "high": 0.1}}},
            "tuning.space.ft.lr: must be > 0, got -0.1",
        ),
        ({"kd": {"temperature": _choice(0.0, 2.0)}}, "tuning.space.kd.temperature: must be > 0, got 0.0"),
        ({"kd": {"temperature": _choice("hot")}}, "tuning.space.kd.temperature: must be a number, got 'hot'"),
        ({"kd": {"batch_size": _choice(0, 8)}}, "tuning.space.kd.batch_size: must be > 0, got 0"),
        ({"kd": {"batch_size": _choice(7.3)}}, "tuning.space.kd.batch_size: must be an integer, got 7.3"),
        (
            {"kd": {"batch_size": {"type": "uniform", "low": 4, "high": 16}}},
            "tuning.space.kd.batch_size: uniform draws fractions; give a choice of whole numbers",
        ),
        (
            {"ckd": {"lr": _choice(0.001)}},
            "tuning.space.ckd: the study does not run method 'ckd'; its methods: ['ft', 'kd']",
        ),
        ({"kd": {"t_squared": _choice("no")}}, "tuning.space.kd.t_squared: must be true or false, got 'no'"),
    ],
)
def test_a_search_space_value_a_trial_would_fail_on_is_refused_in_one_line(
    tmp_path, local_data, space: dict, expected: str
) -> None:
    spec = load_spec(write_study(tmp_path / "s.yaml", local_data, tuning={**TUNING, "space": space}))
    with pytest.raises(StudyError) as err:
        check_study(spec)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_sound_spaces_pass(tmp_path, local_data) -> None:
    space = {
        "ft": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-2}, "batch_size": _choice(8, 16)},
        "kd": {
            "temperature": {"type": "uniform", "low": 1.0, "high": 20.0},
            "t_squared": _choice(True, False),
        },
    }
    check_study(load_spec(write_study(tmp_path / "s.yaml", local_data, tuning={**TUNING, "space": space})))
