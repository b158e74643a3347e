"""A trial whose node was lost is retried elsewhere without using up its failure budget (``max_failures``).

Ray Tune counts every failure of a trial against ``FailureConfig.max_failures`` except an actor error marked
``preempted`` (a node the autoscaler drained). A node that dies without a drain (a crashed or removed machine, a
spot instance gone before its drain, a worker killed under load) is counted like a bug in the trial, so a study on
a cluster that loses a node can end incomplete although nothing was wrong with its trials. ``refund_node_loss``
wraps ``Trial.handle_error`` once per driver process: after Tune's own bookkeeping it gives back the failure when
the error says the trial's node died. Errors raised by the trial's own code (a NaN loss, a bad parameter) still
count, so ``max_failures`` keeps meaning "retries of a failing trial".

A node's death can reach Tune twice for one trial: the actor's failure (the trial is requeued, PENDING) and then
the failure of the task it was running, delivered after the actor was cleaned up. Tune's
``TuneController._process_trial_failure`` stops a PENDING trial as ERROR whatever its budget, so the second report
would end a trial that is already queued to run again (seen in ``tests/test_multinode.py``: two refunds logged,
then "failed for good"). ``ignore_stale_node_loss`` does not fail a PENDING trial on a node-loss report: it queues
the trial afresh (``TuneController._try_recover``, after unstaging it).

``Trial.handle_error``, ``Trial.run_metadata.num_failures``, ``TuneController._process_trial_failure``,
``_try_recover``, ``_unstage_trial_with_resources``, ``_staged_trials`` and ``_trial_to_actor`` are Ray internals:
the wrap is installed only on the Ray versions it was written and tested against (``TESTED``) and when those
internals look as expected. Otherwise the study goes on without it (a lost node then counts as a failure, as in
plain Tune) and the log says why.
"""

from __future__ import annotations

import inspect
from typing import Any

from orchestrator.core.log import log

NODE_DIED = "its node has died"  # Ray's GCS: "The actor died because its node has died. Node Id: ..."
TESTED = (
    (2, 40),
    (2, 60),
)  # Ray versions (major, minor) whose Trial.handle_error this wraps; tested on 2.60.0


def is_node_loss(exc: BaseException | None) -> bool:
    """True for an actor error caused by the death of the actor's node (drained or not)."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayTaskError):
        exc = exc.as_instanceof_cause()
    return isinstance(exc, RayActorError) and (
        bool(getattr(exc, "preempted", False)) or NODE_DIED in str(exc)
    )


def unsupported(version: str, trial_class: Any, controller_class: Any = None) -> str | None:
    """Why the refund cannot be installed on this Ray (its version, or ``Trial``'s and ``TuneController``'s
    internals), or None."""
    try:
        major_minor = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return f"Ray {version}: not a version this was tested with"
    if not TESTED[0] <= major_minor <= TESTED[1]:
        low, high = (".".join(map(str, v)) for v in TESTED)
        return f"Ray {version} is outside the versions the refund was tested with ({low} to {high}.x)"
    handle = getattr(trial_class, "handle_error", None)
    if handle is None or list(inspect.signature(handle).parameters)[:2] != ["self", "exc"]:
        return f"Ray {version}: Trial.handle_error(self, exc) is not there any more"
    if controller_class is not None:
        process = getattr(controller_class, "_process_trial_failure", None)
        params = list(inspect.signature(process).parameters)[:3] if process is not None else []
        if params != ["self", "trial", "exception"]:
            return f"Ray {version}: TuneController._process_trial_failure(self, trial, exception) is not there any more"
        for name in ("_try_recover", "_unstage_trial_with_resources"):
            if not callable(getattr(controller_class, name, None)):
                return f"Ray {version}: TuneController.{name} is not there any more"
    return None


def refund_node_loss() -> bool:
    """Install the refund on Tune's Trial (idempotent). False (and one log line) when this Ray is not one it
    supports: the study then counts a lost node against ``max_failures``, as plain Tune does."""
    import ray
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment.trial import Trial

    original = Trial.handle_error
    if getattr(original, "_refunds_node_loss", False):
        return True
    why = unsupported(ray.__version__, Trial, TuneController)
    if why:
        log(f"{why}: a lost node counts against max_failures in this study (sweep/node_loss.py)")
        return False

    def handle_error(self: Trial, exc: Any = None, **kwargs: Any) -> None:
        metadata = getattr(self, "run_metadata", None)
        before = getattr(metadata, "num_failures", None)
        original(self, exc, **kwargs)
        if before is not None and is_node_loss(exc) and metadata.num_failures > before:
            metadata.num_failures = before
            log(f"trial {self}: its node was lost; it is retried without using its failure budget")

    handle_error._refunds_node_loss = True  # type: ignore[attr-defined]
    TuneController._process_trial_failure = ignore_stale_node_loss(TuneController._process_trial_failure)
    Trial.handle_error = handle_error  # type: ignore[method-assign]
    return True


def ignore_stale_node_loss(process_trial_failure: Any) -> Any:
    """``TuneController._process_trial_failure`` that does not fail a PENDING trial on a node-loss report: the trial
    was already requeued after its node died (Tune sets a trial whose actor failed while starting to RUNNING before
    it calls this, so that case still goes through). It is queued afresh instead, as Tune's own recovery does.

    Dropping the report alone once left a trial PENDING for good (CI, 2026-12-07: 23 of 24 trials done, the 24th
    never started again, the driver waiting). Whatever Tune had done for the trial in between (an actor requested
    for it, it staged), the report arrives in the middle of it; so the trial is unstaged, any actor it has is
    stopped, and it is requeued at the end of the queue with a clean slate."""
    from ray.tune.experiment.trial import Trial

    def process(self: Any, trial: Any, exception: Any) -> None:
        if getattr(trial, "status", None) == Trial.PENDING and is_node_loss(exception):
            staged, actor = trial in self._staged_trials, trial in self._trial_to_actor
            log(
                f"trial {trial}: its lost node reported again; it is queued to run again afresh "
                f"(it was {'staged' if staged else 'not staged'}, {'with' if actor else 'without'} an actor)"
            )
            if staged:
                self._unstage_trial_with_resources(trial)
            self._try_recover(trial, exc=exception)  # stops its actor, if any; PENDING at the queue's end
            return
        process_trial_failure(self, trial, exception)

    process._ignores_stale_node_loss = True  # type: ignore[attr-defined]
    return process
