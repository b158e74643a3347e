"""The study YAML's ``tuning:`` section and ``recipe:`` presets (read by ``spec.StudySpec``).

``tuning: none`` (the default) keeps the fixed recipe: every cell trains with ``student_train`` and
``method_params``. A mapping tunes every cell (task, teacher, student, method; FT included) with the same budget on
validation before the study's seeds run (``sweep/tuning_stage.py``)::

    tuning:
      searcher: optuna          # optuna (TPE) | random (Tune's BasicVariantGenerator)
      scheduler: asha           # asha | none; ASHA stops weak configurations on the validation selection score
      grace_period: 1           # ASHA: epochs every configuration gets
      reduction_factor: 2       # ASHA: keep the best 1/reduction_factor at each rung
      samples: 8                # configurations per cell
      max_epochs: 5             # epochs of a tuning trial (ASHA's max_t)
      seed: 0                   # the searcher's seed
      trial_seed: 1000000       # the tuning trials' training seed: never one of the study's seeds
      space:                    # optional overrides of DEFAULT_SPACE, per method and parameter
        kd: {temperature: {type: choice, values: [2.0, 4.0]}}
        ft: {lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}}

``recipe: authors`` presets each method's lr (and the few method parameters and batch size the authors give) to
the settings published in the authors' replication package (BackOnTruck/kd-empirical, README "Hyperparameters");
everything they do not give comes from ``student_train`` / ``method_params``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TRAIN_KEYS = ("lr", "batch_size")  # the train settings a recipe or a search may set per method

# Published ranges: lr log-uniform for every method; the temperatures the KD literature uses (Hinton et al. and
# the CodeKD study try 1..20); PKD's beta (0.1..100, Sun et al. 2019), CKD's beta/gamma (relation-loss weights,
# the CKD paper's default 10), DIST's beta/gamma (Huang et al. 2022 use 1..2), alpha a mixing weight in [0, 1].
_LR = {"type": "loguniform", "low": 1e-5, "high": 1e-3}
DEFAULT_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "ft": {"lr": _LR},
    "kd": {"lr": _LR, "temperature": {"type": "choice", "values": [1.0, 2.0, 4.0, 10.0, 20.0]}},
    "dist": {
        "lr": _LR,
        "temperature": {"type": "choice", "values": [1.0, 2.0, 4.0, 10.0]},  # 10: the authors' README run
        "beta": {"type": "loguniform", "low": 0.1, "high": 10.0},
        "gamma": {"type": "loguniform", "low": 0.1, "high": 10.0},
    },
    "pkd": {
        "lr": _LR,
        "alpha": {"type": "uniform", "low": 0.0, "high": 1.0},
        "beta": {"type": "loguniform", "low": 0.1, "high": 100.0},
        "temperature": {"type": "choice", "values": [1.0, 2.0, 4.0, 10.0, 20.0]},
    },
    "ckd": {
        "lr": _LR,
        "alpha": {"type": "uniform", "low": 0.0, "high": 1.0},
        "beta": {"type": "loguniform", "low": 0.1, "high": 100.0},
        "gamma": {"type": "loguniform", "low": 0.1, "high": 100.0},
        "temperature": {"type": "choice", "values": [1.0, 2.0, 3.0, 4.0, 10.0]},
    },
}

# The authors' published settings (BackOnTruck/kd-empirical README): lr per method, KD and DIST T=10, CKD
# beta=gamma=1 with batch 16. Anything not listed comes from the study's student_train / method_params.
AUTHORS_RECIPE: dict[str, dict[str, Any]] = {
    "ft": {"lr": 3e-4},
    "kd": {"lr": 3e-4, "temperature": 10.0},
    "pkd": {"lr": 1e-4},
    "dist": {"lr": 1e-4, "temperature": 10.0},
    "ckd": {"lr": 3e-5, "beta": 1.0, "gamma": 1.0, "batch_size": 16},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamRange(_Strict):
    type: Literal["loguniform", "uniform", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ParamRange:
        if self.type == "choice":
            if not self.values or self.low is not None or self.high is not None:
                raise ValueError("type choice takes a non-empty 'values' list (and no low/high)")
            return self
        if self.low is None or self.high is None or self.values is not None:
            raise ValueError(f"type {self.type} takes 'low' and 'high' (and no values)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self

    def tune_domain(self) -> Any:
        from ray import tune

        if self.type == "choice":
            return tune.choice(list(self.values or []))
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        return tune.uniform(self.low, self.high)


TUNING_TRIAL_SEED = 1_000_000  # far from the seeds studies use (0, 1, 2, ...)


class TuningSettings(_Strict):
    searcher: Literal["optuna", "random"] = "optuna"
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    samples: int = Field(8, ge=1)
    max_epochs: int = Field(5, ge=1)
    seed: int = 0
    # The tuning trials' training seed. Never a final seed: with it, one final run per cell would replay the
    # winning tuning trial exactly (same init and batch order), the best of ``samples`` draws on the same noise.
    trial_seed: int = TUNING_TRIAL_SEED
    space: dict[str, dict[str, ParamRange]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TuningSettings:
        if self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period ({self.grace_period}) must be <= max_epochs ({self.max_epochs})")
        for method, params in self.space.items():
            if method not in DEFAULT_SPACE:
                raise ValueError(f"space: unknown method '{method}'; valid: {sorted(DEFAULT_SPACE)}")
            valid = valid_params(method)
            unknown = sorted(set(params) - set(valid))
            if unknown:
                raise ValueError(f"space.{method}: unknown hyperparameter(s) {unknown}; valid: {valid}")
        return self

    def space_for(self, method: str) -> dict[str, ParamRange]:
        """The method's search space: the defaults, overridden per parameter by ``space``."""
        base = {k: ParamRange(**v) for k, v in DEFAULT_SPACE.get(method, {"lr": _LR}).items()}
        return {**base, **self.space.get(method, {})}

    def tuning_seed(self, seeds: list[int]) -> int:
        """The tuning trials' training seed (the study refuses one of its final seeds). A constant, not derived from
        ``seeds``: adding a seed to a tuned study adds final runs, it does not start every search again."""
        return self.trial_seed

    def identity(self, method: str, seeds: list[int]) -> dict[str, Any]:
        """What makes a cell's search a different search: the method's own resolved space (defaults included, so a
        changed default range is a new search, and another method's override is not), the searcher and budget and
        the trials' seed (``samples`` is left out: raising it extends a search)."""
        out = self.model_dump(exclude={"samples", "space", "trial_seed"})
        out["space"] = {n: r.model_dump() for n, r in sorted(self.space_for(method).items())}
        out["trial_seed"] = self.tuning_seed(seeds)
        return out


def valid_params(method: str) -> list[str]:
    from kd_methods import get_method

    return sorted({*TRAIN_KEYS, *get_method(method).defaults})


def parse_tuning(value: Any) -> Any:
    """``none`` / null / missing: no tuning; a mapping: TuningSettings."""
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str):
        raise ValueError(f"tuning is 'none' or a mapping (searcher, scheduler, samples, ...), got '{value}'")
    return value


def recipe_settings(recipe: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train overrides, method-parameter overrides) of a recipe preset for ``method``."""
    if recipe != "authors":
        return {}, {}
    preset = AUTHORS_RECIPE.get(method, {})
    train = {k: v for k, v in preset.items() if k in TRAIN_KEYS}
    return train, {k: v for k, v in preset.items() if k not in TRAIN_KEYS}
