"""A second node-loss report for a trial Tune has already queued again (sweep/node_loss.py), on a real Tune
controller in a real Ray: the trial must run again, not end as ERROR and not stay PENDING for good."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="module")
def controller_parts(tmp_path_factory):
    import ray
    from ray import tune
    from ray.train._internal.storage import StorageContext

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

    def quick(config):
        tune.report({"x": 1.0})

    tune.register_trainable("quick", quick)
    storage = tmp_path_factory.mktemp("tune")
    yield lambda name: StorageContext(storage_path=str(storage), experiment_dir_name=name)
    ray.shutdown()


def _controller_with_one_trial(storage):
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment.trial import Trial

    controller = TuneController(storage=storage)
    trial = Trial("quick", config={}, storage=storage)
    controller.add_trial(trial)
    return controller, trial


def _run_to_the_end(controller, trial, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while not controller.is_finished() and time.time() < deadline:
        controller.step()
    controller.cleanup()
    return trial.status


def _second_report(controller, trial) -> None:
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController

    from orchestrator.sweep.node_loss import ignore_stale_node_loss

    process = ignore_stale_node_loss(TuneController._process_trial_failure)
    process(controller, trial, RayActorError(None, "The actor died because its node has died. Node Id: 01ab"))


def test_a_queued_trial_staged_without_an_actor_runs_again(controller_parts):
    """Staged, with no actor requested for it: Tune's scheduling loop never looks at such a trial again (measured
    with the old drop: still PENDING after 20 s of steps). The CI hang of 2026-12-07 left a trial PENDING for good
    just after its second report was dropped."""
    controller, trial = _controller_with_one_trial(controller_parts("staged"))
    controller._staged_trials.add(trial)
    controller._actor_cache.increase_max(trial.placement_group_factory)
    controller._pending_trials_list.remove(trial)
    _second_report(controller, trial)
    assert trial.status == "PENDING" and trial not in controller._staged_trials
    assert _run_to_the_end(controller, trial) == "TERMINATED"


def test_a_queued_trial_with_its_new_actor_requested_runs_again(controller_parts):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    controller, trial = _controller_with_one_trial(controller_parts("with-actor"))
    busy = placement_group(
        [{"CPU": 1}]
    )  # the only CPU: the trial's new actor is requested but cannot start yet
    ray.get(busy.ready(), timeout=30)
    for _ in range(20):
        controller.step()  # stages it and requests its actor
    assert trial in controller._trial_to_actor and trial.status == "PENDING"
    _second_report(controller, trial)
    remove_placement_group(busy)
    assert (
        trial not in controller._trial_to_actor and trial.status == "PENDING"
    )  # its actor stopped, requeued
    assert trial.run_metadata.num_failures == 0  # a lost node uses none of its failure budget
    assert _run_to_the_end(controller, trial) == "TERMINATED"
