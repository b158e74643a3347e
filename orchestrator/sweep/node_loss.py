"""A trial whose node was lost is retried elsewhere without using up its failure budget (``max_failures``).

Ray Tune counts every failure of a trial against ``FailureConfig.max_failures`` except an actor error marked
``preempted`` (a node the autoscaler drained). A node that dies without a drain (a crashed or removed machine, a
spot instance gone before its drain, a worker killed under load) is counted like a bug in the trial, so a study on
a cluster that loses a node can end incomplete although nothing was wrong with its trials. ``refund_node_loss``
wraps ``Trial.handle_error`` once per driver process: after Tune's own bookkeeping it gives back the failure when
the error says the trial's node died. Errors raised by the trial's own code (a NaN loss, a bad parameter) still
count, so ``max_failures`` keeps meaning "retries of a failing trial".
"""

from __future__ import annotations

from typing import Any

NODE_DIED = "its node has died"  # Ray's GCS: "The actor died because its node has died. Node Id: ..."


def is_node_loss(exc: BaseException | None) -> bool:
    """True for an actor error caused by the death of the actor's node (drained or not)."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayTaskError):
        exc = exc.as_instanceof_cause()
    return isinstance(exc, RayActorError) and (
        bool(getattr(exc, "preempted", False)) or NODE_DIED in str(exc)
    )


def refund_node_loss() -> None:
    """Install the refund on Tune's Trial (idempotent)."""
    from ray.tune.experiment.trial import Trial

    original = Trial.handle_error
    if getattr(original, "_refunds_node_loss", False):
        return

    def handle_error(self: Trial, exc: Any = None) -> None:
        before = self.run_metadata.num_failures
        original(self, exc)
        if is_node_loss(exc) and self.run_metadata.num_failures > before:
            self.run_metadata.num_failures = before
            from orchestrator.sweep.stages import log

            log(f"trial {self}: its node was lost; it is retried without using its failure budget")

    handle_error._refunds_node_loss = True  # type: ignore[attr-defined]
    Trial.handle_error = handle_error  # type: ignore[method-assign]
