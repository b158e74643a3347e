"""The next batches, read while the current step runs: student inputs and cached teacher signals.

A reader thread builds batch k+1 (token ids padded by vectorised indexing; a cache's rows gathered by
``CachedTeacher.fetch``), pins it and starts its copy to the training device (``non_blocking`` on a side CUDA
stream), while the main thread runs step k. The main thread then only waits for the copy and derives what is
derived on the device (``CachedTeacher.finish``: CKD's relations from the Gram numbers). A live teacher is not
prefetched: it runs on the training device in the main thread, as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kd_methods import SignalSpec, TeacherSignals


@dataclass
class Batch:
    indices: Tensor
    ids: Tensor
    mask: Tensor
    labels: Tensor
    signals: TeacherSignals | None  # fetched (not yet finished) cached signals, on the device
    wait_seconds: float = 0.0  # how long the main thread waited for this batch's reader


def prefetchable(teacher: Any) -> bool:
    """True for a source with a host side to run ahead (``fetch``) and a device side (``finish``): the cache."""
    return callable(getattr(teacher, "fetch", None)) and callable(getattr(teacher, "finish", None))


class Prefetcher:
    """Iterates ``batches`` (index tensors) of ``split`` as ``Batch``es on ``device``, ``depth`` batches ahead."""

    def __init__(
        self,
        split: Any,
        batches: Sequence[Tensor],
        device: torch.device,
        teacher: Any = None,
        spec: SignalSpec | None = None,
        split_name: str = "train",
        depth: int = 2,
    ) -> None:
        self.split, self.batches, self.device = split, list(batches), device
        self.teacher = teacher if (teacher is not None and spec is not None and not spec.empty) else None
        self.spec, self.split_name, self.depth = spec, split_name, max(1, depth)
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-reader")

    def _to_device(self, t: Tensor) -> Tensor:
        if not self.cuda:
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def _read(self, indices: Tensor) -> tuple[Batch, Any]:
        ids, mask, labels = self.split.batch(indices)
        fetched = self.teacher.fetch(self.split_name, indices, self.spec) if self.teacher else None
        event = None
        if self.cuda:
            with torch.cuda.stream(self.stream):
                ids, mask, labels = (self._to_device(t) for t in (ids, mask, labels))
                fetched = fetched.map(self._to_device) if fetched is not None else None
                event = torch.cuda.Event()
                event.record(self.stream)
        return Batch(indices, ids, mask, labels, fetched), event

    def __iter__(self) -> Iterator[Batch]:
        pending: list[Future] = []
        try:
            for k in range(min(self.depth, len(self.batches))):
                pending.append(self.pool.submit(self._read, self.batches[k]))
            for k in range(len(self.batches)):
                start = time.perf_counter()
                batch, event = pending.pop(0).result()
                if event is not None:
                    # The main stream waits for the copy; the tensors are marked as used there, so the caching
                    # allocator does not hand their memory to the reader's stream while this step still reads it.
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for t in [
                        batch.ids,
                        batch.mask,
                        batch.labels,
                        *(batch.signals.tensors() if batch.signals else []),
                    ]:
                        t.record_stream(current)
                batch.wait_seconds = time.perf_counter() - start
                if k + self.depth < len(self.batches):
                    pending.append(self.pool.submit(self._read, self.batches[k + self.depth]))
                yield batch
        finally:
            for f in pending:
                f.cancel()
            self.pool.shutdown(wait=True)
