"""A small process pool for per-commune work, shared by every step of a run process.

Workers are spawned once per process (not forked: the Dagster process has threads) and keep their
imports and caches (loaded sources, communes) between steps. `configure(workers)` sets the size (the
territory resource does, from its `workers` field; 0 = the number of CPUs); 1 runs everything inline.
Workers exit when their parent dies, even by SIGKILL (they watch its pid), so none outlives a killed run.
A worker keeps its caches while it runs tasks of one kind (one step). After every pooled step each worker
drops them and hands its freed memory back to the OS (release_workers), so idle workers do not sit on a
step's peak; a worker also does so when the kind of task changes (a step that failed before its release).
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from .caches import release_all

T = TypeVar("T")
R = TypeVar("R")

_EXECUTOR: ProcessPoolExecutor | None = None
_EXECUTOR_SIZE = 0
_CONFIGURED = 0


def configure(workers: int) -> None:
    """Pool size for this process: 0 = one per CPU, 1 = inline (no worker processes)."""
    global _CONFIGURED
    _CONFIGURED = max(0, int(workers))


def worker_count() -> int:
    if _CONFIGURED:
        return _CONFIGURED
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


_BARRIER = None  # in a worker: the pool's barrier, so that a release reaches every worker once


def _start_worker(parent: int, barrier) -> None:
    global _BARRIER
    _BARRIER = barrier
    _watch_parent(parent)


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as the parent process is gone (a SIGKILL'ed run leaves no worker behind)."""
    import time

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _executor(size: int) -> ProcessPoolExecutor:
    global _EXECUTOR, _EXECUTOR_SIZE
    if _EXECUTOR is None or _EXECUTOR_SIZE != size:
        shutdown()
        context = multiprocessing.get_context("spawn")
        _EXECUTOR = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=_start_worker,
                                        initargs=(os.getpid(), context.Barrier(size)))
        _EXECUTOR_SIZE = size
    return _EXECUTOR


def shutdown() -> None:
    global _EXECUTOR
    if _EXECUTOR is not None:
        _EXECUTOR.shutdown(wait=True, cancel_futures=True)
        _EXECUTOR = None


atexit.register(shutdown)


_LAST_KIND: str | None = None


# Trimming walks the whole heap (~20 ms for 1 GB): after a task only when the worker holds more than this.
TRIM_ABOVE_BYTES = 1280 * 1024 * 1024


def resident_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


try:
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _MALLOC_TRIM = None


def trim_heap() -> None:
    """Give the free pages of glibc's heap and of Arrow's allocator back to the OS (both keep them
    otherwise: a process's RSS would stay at the peak of its largest task for the rest of the run)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()


def _drop_caches() -> None:
    """In a worker: clear the registered caches and give the freed memory back."""
    release_all()
    gc.collect()
    trim_heap()


def _run_task(fn: Callable[[T], R], task: T) -> R:
    global _LAST_KIND
    kind = f"{fn.__module__}.{fn.__qualname__}"
    if _LAST_KIND is not None and kind != _LAST_KIND:
        _drop_caches()
    _LAST_KIND = kind
    try:
        return fn(task)
    finally:
        if resident_bytes() > TRIM_ABOVE_BYTES:
            trim_heap()


def _release_worker() -> int:
    global _LAST_KIND
    _drop_caches()
    _LAST_KIND = None
    try:  # hold this worker until every worker has its own release task
        _BARRIER.wait(timeout=30)
    except threading.BrokenBarrierError:
        _BARRIER.reset()
    return os.getpid()


def release_workers() -> set[int]:
    """After a step: every idle worker drops its caches and gives its freed heap back to the OS (else idle
    workers hold the step's peak through every later step: 2.4 GB at full scale). The workers' pids."""
    if _EXECUTOR is None:
        return set()
    return {future.result() for future in [_EXECUTOR.submit(_release_worker) for _ in range(_EXECUTOR_SIZE)]}


def _warm_worker() -> int:
    """Import what tasks need (geo stack, connectors, Great Expectations) once per worker."""
    import iarbre_assets.compute.constraints  # noqa: F401
    import iarbre_assets.compute.ingest  # noqa: F401
    import iarbre_assets.compute.scoring  # noqa: F401
    from quality.runner import warm_up

    warm_up()
    return os.getpid()


def prestart() -> None:
    """Start and warm the workers in the background (e.g. while the main process loads the definitions)."""
    size = worker_count()
    if size > 1:
        executor = _executor(size)
        for _ in range(size):
            executor.submit(_warm_worker)


# Below this much work (in cells), starting workers and shipping data costs more than it saves.
SMALL_WORK_CELLS = 1_000_000


def map_tasks(fn: Callable[[T], R], tasks: Iterable[T], size: Callable[[T], float] | None = None,
              keep_order: bool = False, progress: Callable[[], None] | None = None) -> list[R]:
    """Run fn over tasks, in parallel when more than one worker; results in task order (see iter_tasks)."""
    return list(iter_tasks(fn, tasks, size=size, keep_order=keep_order, progress=progress))


def iter_tasks(fn: Callable[[T], R], tasks: Iterable[T], size: Callable[[T], float] | None = None,
               keep_order: bool = False, progress: Callable[[], None] | None = None) -> Iterator[R]:
    """Run fn over tasks, in parallel when more than one worker; yield the results in task order.

    Every task is submitted before the first result is yielded, so the workers keep computing while the
    caller handles a result (e.g. Dagster records a factor's materialisations while the next factor runs).

    `size` estimates a task's work in cells: small batches (a demo territory, an incremental update of one
    commune) run inline, and the biggest tasks are scheduled first so both cores finish together — unless
    `keep_order`, when the caller's order matters more (e.g. grouped by source, for the workers' caches).
    `progress` is called once per finished task, in the caller's process.
    """
    tasks = list(tasks)
    workers = min(worker_count(), len(tasks))
    small = size is not None and sum(size(t) for t in tasks) < SMALL_WORK_CELLS
    if workers <= 1 or small:
        for task in tasks:
            result = fn(task)
            if progress:
                progress()
            yield result
        return
    order = list(range(len(tasks)))
    if size is not None and not keep_order:
        order.sort(key=lambda i: -size(tasks[i]))
    executor = _executor(worker_count())
    futures = {i: executor.submit(_run_task, fn, tasks[i]) for i in order}
    if progress:
        for future in futures.values():
            future.add_done_callback(lambda _f: progress())
    try:
        for i in range(len(tasks)):
            yield futures[i].result()
    finally:  # the caller stopped early (an error): do not leave the rest running
        for future in futures.values():
            future.cancel()
    release_workers()
