"""A small process pool for per-commune work, shared by every step of a run process.

Workers are spawned once per process (not forked: the Dagster process has threads) and keep their
imports and caches (loaded sources, communes) between steps. IARBRE_WORKERS sets the size
(default: the number of CPUs); 1 runs everything inline, which the unit tests use.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_EXECUTOR: ProcessPoolExecutor | None = None
_EXECUTOR_SIZE = 0


def worker_count() -> int:
    configured = os.environ.get("IARBRE_WORKERS")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _executor(size: int) -> ProcessPoolExecutor:
    global _EXECUTOR, _EXECUTOR_SIZE
    if _EXECUTOR is None or _EXECUTOR_SIZE != size:
        shutdown()
        _EXECUTOR = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"))
        _EXECUTOR_SIZE = size
    return _EXECUTOR


def shutdown() -> None:
    global _EXECUTOR
    if _EXECUTOR is not None:
        _EXECUTOR.shutdown(wait=True, cancel_futures=True)
        _EXECUTOR = None


atexit.register(shutdown)


def map_tasks(fn: Callable[[T], R], tasks: Iterable[T], largest_first: Callable[[T], float] | None = None) -> list[R]:
    """Run fn over tasks, in parallel when more than one worker; results in task order.

    `largest_first` (a size estimate) schedules the big communes first so both cores finish together.
    """
    tasks = list(tasks)
    size = min(worker_count(), len(tasks))
    if size <= 1:
        return [fn(task) for task in tasks]
    order = list(range(len(tasks)))
    if largest_first is not None:
        order.sort(key=lambda i: -largest_first(tasks[i]))
    executor = _executor(worker_count())
    futures = {i: executor.submit(fn, tasks[i]) for i in order}
    return [futures[i].result() for i in range(len(tasks))]
