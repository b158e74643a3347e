"""A tuning trial on a Ray worker: the cell's base trial with one sampled configuration, trained on validation only.

The searcher samples the configuration (``lr``, method parameters); ``with_sample`` folds it into the cell's trial
(train settings, ``method.<name>`` params, a ``trial_key`` of cell + configuration) and the trial wrapper
(``trial.py``) records it as an MLflow run with tag ``stage=tune``: its params, tag ``tuned_values`` (the sampled
values as JSON, typed: a boolean stays a boolean), per-epoch ``val_*`` metrics and ``best_val_selection_score`` (the
running best, which the searcher and ASHA read). No test metrics, no checkpoint.

A draw that repeats a configuration another draw of the study already trained (a small discrete space, or random
draws with repeats) is a sample spent like any other, but it is not trained again: ``repeat_draw`` records it as a
run of its own with tag ``duplicate_of`` (the earlier run) and the earlier result, so every draw counts once.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.paths import stable_key
from orchestrator.design.tuning_spec import TRAIN_KEYS

METRIC = "best_val_selection_score"  # the running best validation selection score of a tuning trial
# The best validation selection score an input-blind (constant) prediction reaches (Task.selection_baseline).
BASELINE = "val_baseline_selection_score"
DIVERGED = "NonFiniteLossError"  # the error tag of a trial whose loss stopped being finite (train/trainer.py)


def is_diverged(run: Any) -> bool:
    """Whether a run failed because its loss stopped being finite (its ``error`` tag names ``DIVERGED``)."""
    return run.info.status == "FAILED" and run.data.tags.get("error", "").startswith(f"{DIVERGED}:")


def param_name(name: str) -> str:
    """The MLflow param a tuned hyperparameter is recorded under (the same in tuning and final runs)."""
    return name if name in TRAIN_KEYS else f"method.{name}"


def plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def with_sample(base: Any, sample: dict[str, Any]) -> Any:
    """The cell's base trial with the sampled hyperparameters in its train settings, method params, MLflow params
    and trial key (a copy: the base is shared by the cell's samples)."""
    sample = {k: plain(v) for k, v in sorted(sample.items())}
    work = copy.deepcopy(base.work)
    params = dict(base.params)
    for name, value in sample.items():
        if name in TRAIN_KEYS:
            setattr(work.train, name, value)
        else:
            work.method_params[name] = value
        params[param_name(name)] = value
    key = f"{base.tags['cell']}-{stable_key(sample)[:10]}"
    tags = {**base.tags, "trial_key": key, "tuned_values": json.dumps(sample, sort_keys=True)}
    return dataclasses.replace(
        base, work=work, params=params, trial_key=key, tags=tags,
        run_name=f"tune-{base.run_name}-{key[-6:]}",
    )  # fmt: skip


def tuning_prepared(prepared: Any) -> Any:
    """The prepared trial with a token test split (8 validation samples): the trainer's test pass costs nothing,
    and nothing from it is recorded."""
    from orchestrator.train.trainer import EncodedSplit

    val = prepared.encoded["validation"]
    n = min(8, len(val))
    encoded = {**prepared.encoded, "test": EncodedSplit(val.input_ids[:n], val.labels[:n], val.pad_id)}
    return dataclasses.replace(prepared, encoded=encoded)


def tuning_epoch(client: Any, run_id: str) -> Any:
    """The per-epoch callback of a tuning trial: report to Tune first (which raises SystemExit when the scheduler
    stopped the trial after the previous epoch, so an epoch past the stop is never recorded), then log."""
    from ray import tune

    best = [float("-inf")]

    def on_epoch(row: dict[str, float]) -> None:
        best[0] = max(best[0], float(row["val_selection_score"]))
        metrics = {**row, METRIC: best[0]}
        tune.report({**metrics, "run_id": run_id})
        tracking.log_metrics(
            client, run_id, {k: v for k, v in metrics.items() if k != "epoch"}, step=int(row["epoch"])
        )

    return on_epoch


def repeat_draw(client: Any, exp_id: str, trial: Any, runs: list[Any], tags: dict[str, str]) -> bool:
    """A draw (Tune trial ``tags["tune_trial_id"]``) whose configuration another draw already trained (``runs``:
    the runs of its ``trial_key``): recorded as a run of its own, not trained, and True. FINISHED with the earlier
    run's result (its score reported to the searcher), or FAILED (``NonFiniteLossError`` raised) when that run
    diverged. False when no other draw ran it, or when this draw made one of ``runs`` (a retry of the draw)."""
    attempt = tags.get("tune_trial_id")
    if attempt is None or any(r.data.tags.get("tune_trial_id") == attempt for r in runs):
        return False
    ran = sorted(
        (r for r in runs if r.info.status == "FINISHED" or is_diverged(r)),
        key=lambda r: ("duplicate_of" in r.data.tags, r.info.start_time or 0, r.info.run_id),
    )
    if not ran:
        return False
    first = ran[0]
    run_id = client.create_run(
        exp_id, run_name=trial.run_name, tags={**tags, "duplicate_of": first.info.run_id}
    ).info.run_id
    tracking.log_params(client, run_id, trial.params)
    if first.info.status == "FAILED":
        from orchestrator.train.trainer import NonFiniteLossError

        why = f"not trained: the same configuration diverged in run {first.info.run_id}"
        client.set_tag(run_id, "error", f"{DIVERGED}: {why}")
        client.set_terminated(run_id, "FAILED")
        raise NonFiniteLossError(why)
    copied = {k: v for k, v in first.data.metrics.items() if k in (METRIC, BASELINE, "best_epoch")}
    tracking.log_metrics(client, run_id, {**copied, "trial_seconds": 0.0, "epochs_run": 0.0})
    client.set_terminated(run_id, "FINISHED")
    from ray import tune

    tune.report({"skipped": 1.0, **copied})
    return True
