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
    """Samples the RSS of a process and its descendants every `interval` seconds; keeps the peak of the sum.

    With `timeline=True` it also keeps every sample as (unix time, tree RSS bytes, tree CPU seconds,
    {pid: RSS bytes}), so a
    caller can attribute memory and CPU to time windows (the steps of a run). The CPU of a child that has
    exited is lost from later samples, so CPU per window is the sum of positive increments per process."""

    def __init__(self, pid: int | None = None, interval: float = 0.1, timeline: bool = False,
                 exclude: set[int] = frozenset()):
        self.root = psutil.Process(pid)
        self.exclude = set(exclude)  # processes of the tree that are not measured (e.g. a partners' stand-in)
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int, float, dict]] | None = [] if timeline else None
        self._cpu_seen: dict[int, float] = {}
        self._cpu_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total, each = 0, {}
        for proc in process_tree(self.root):
            if proc.pid in self.exclude:
                continue
            try:
                rss = proc.memory_info().rss
                total += rss
                if self.samples is not None:
                    each[proc.pid] = rss
                    times = proc.cpu_times()
                    used = times.user + times.system
                    self._cpu_total += max(0.0, used - self._cpu_seen.get(proc.pid, 0.0))
                    self._cpu_seen[proc.pid] = used
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if self.samples is not None:
            self.samples.append((time.time(), total, self._cpu_total, each))
        return total

    def window(self, start: float, end: float) -> tuple[int, float, dict]:
        """Peak tree RSS, CPU seconds, and the per-process RSS at the peak, between two unix times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = [s for s in self.samples if s[0] < start][-1:] or inside[:1]
        after = [s for s in self.samples if s[0] > end][:1] or inside[-1:]
        top = max(inside + after, key=lambda s: s[1], default=None)
        cpu = (after[0][2] - before[0][2]) if before and after else 0.0
        return (top[1] if top else 0), cpu, (top[3] if top else {})

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


def _serve(server_class, root: str, port: int, pipe) -> None:
    server = server_class(root, port=port)
    server.start()
    pipe.send(server.url)
    pipe.recv()  # until the benchmark says stop (or dies: recv raises EOFError)


@contextmanager
def partner_server(platform):
    """The demo territory's partner endpoints (its local wire server) in a process of their own, as the
    partners' servers are in reality: yields (url, pid), so a run uses it through LOCAL_SERVER and a memory
    measure can leave it out. Same port rule as the platform's own start, so paged links stay the same."""
    import multiprocessing

    from iarbre_assets.platform import _server_class, local_server_port

    root = str(platform.resolve_path(platform.territory.local_server.root))
    port = local_server_port(root)
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(_server_class(platform.territory.local_server.kind), root, port, theirs), daemon=True)
    process.start()
    try:
        yield ours.recv(), process.pid
    finally:
        ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()
