"""Wall time and peak resident memory of a process tree (this process and all its children)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psutil


def process_tree(root: psutil.Process) -> list:
    """The process and its descendants ([] once it has exited)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class TreeMemory:
    """Samples the RSS of a process and its descendants every `interval` seconds; keeps the peak of the sum."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for proc in process_tree(self.root):
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


@contextmanager
def measured(label: str, results: dict, pid: int | None = None):
    """Record `label`: wall seconds, CPU seconds of the tree, and peak tree RSS, into `results`."""
    root = psutil.Process(pid)

    def cpu() -> float:
        total = 0.0
        for proc in process_tree(root):
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    cpu_start, start = cpu(), time.perf_counter()
    with TreeMemory(pid) as memory:
        yield
        cpu_end = cpu()
    results[label] = {"wall_s": time.perf_counter() - start, "cpu_s": cpu_end - cpu_start,
                      "peak_rss_gb": memory.peak / 1e9}


def report(results: dict) -> None:
    for label, r in results.items():
        extra = "".join(f", {k} {v}" for k, v in r.items() if k not in {"wall_s", "cpu_s", "peak_rss_gb"})
        print(f"{label:48s} wall {r['wall_s']:8.1f} s   cpu {r['cpu_s']:8.1f} s   "
              f"peak RSS (process tree) {r['peak_rss_gb']:5.2f} GB{extra}")
