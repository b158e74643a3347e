"""The transfer check's student runs, in this process or in ``workers`` processes sharing one device.

A small student leaves a large GPU mostly idle (its steps are bound by kernel launches, not arithmetic), so the
``gpu`` size runs several students at once, one per worker process, each with its own CUDA context; on a
2-core CPU the ``cpu`` size runs two, one torch thread each (``sizes.py`` says why). A run's result does not depend on where or after what it runs: every run seeds
itself (``run_trial``), so the check's numbers are the same with any number of workers (up to the device's own
non-determinism). Workers attach to the teacher cache the parent built and read the tokenizer it trained.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

_RUNNER: Any = None  # a worker's TransferRunner


def _log(msg: str) -> None:
    print(f"[transfer {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _init(size: Any, data: str, work: str, device: str, cache: tuple, threads: int) -> None:
    global _RUNNER
    import torch

    from orchestrator.bench.transfer_runner import TransferRunner

    torch.set_num_threads(threads)
    _RUNNER = TransferRunner(size, data, Path(work), device)
    _RUNNER.attach(*cache)


def _job(job: tuple) -> dict[str, float]:
    from orchestrator.bench.transfer_runner import summarise

    return summarise(_RUNNER.size.task, _RUNNER.run(*job))


class Pool:
    """``map(jobs)``: each job ``(method, params, seed, arm[, steps])`` run by ``runner`` (or by a worker's copy of it),
    results (``transfer.summarise``) in job order."""

    def __init__(self, runner: Any, data: str, workers: int = 1) -> None:
        self.runner, self.workers = runner, max(1, workers)
        self.executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            import multiprocessing

            threads = max(1, (os.cpu_count() or 1) // self.workers)
            args = (runner.size, data, str(runner.work), runner.device, runner.cache, threads)
            self.executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=args,
            )

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def map(self, jobs: list[tuple]) -> list[dict[str, float]]:
        from orchestrator.bench.transfer_runner import summarise

        out: list[dict[str, float]] = []
        if self.executor is None:
            for job in jobs:
                out.append(summarise(self.runner.size.task, self.runner.run(*job)))
                _show(job, out[-1])
            return out
        futures = [self.executor.submit(_job, job) for job in jobs]
        for job, future in zip(jobs, futures):
            out.append(future.result())
            _show(job, out[-1])
        return out


def _show(job: tuple, r: dict[str, float]) -> None:
    method, params, seed, arm = job[:4]
    _log(
        f"{arm}: {method} seed {seed} {params}: val selection {r['selection']:.4f}, test {r['test']:.4f} "
        f"({r['train_seconds']:.1f} s)"
    )
