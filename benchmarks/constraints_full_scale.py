"""Time the constraints step (footprint + coverage of every factor, every commune) as the platform runs it.

    .venv/bin/python benchmarks/constraints_full_scale.py --home /tmp/full1 \\
        --territory /tmp/full1/data/full/territory.yaml [--factors a,b] [--communes 99101,99102] \\
        [--out DIR] [--workers N] [--compare DIR]

The tasks are built as assets/constraints.py builds them (one ConstraintTask per factor and commune,
grouped by factor in catalogue order, the biggest commune windows first within a factor) and run through
compute.pool.map_tasks with the same arguments. The sources must already be ingested (accepted versions
under the home); nothing in the home is written: the outputs go to --out (default: a temporary
directory, deleted at the end).

Printed: per factor, the CPU seconds its tasks spent in the workers (footprint + coverage); then the wall
time of the whole step, the CPU time of the process tree (this process and the pool workers, sampled with
psutil so that workers' time counts even though they outlive the step), and the peak resident memory of the
process tree (sum of the RSS of this process and its children, sampled every 0.1 s). With --compare DIR,
every coverage GeoTIFF is compared cell by cell with DIR/<factor>/<commune>.tif (e.g. an earlier run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class TreeMonitor:
    """Samples this process and its descendants: peak summed RSS, and the last CPU times seen per pid."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.me = psutil.Process()
        self.peak_rss = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        procs = [self.me]
        try:
            procs += self.me.children(recursive=True)
        except psutil.Error:
            pass
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self.base_cpu = dict(self.cpu)
        self.sample()
        self.base_cpu = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()

    def cpu_seconds(self) -> float:
        return sum(v - self.base_cpu.get(pid, 0.0) for pid, v in self.cpu.items())


def timed_constraint(task):
    """run_constraint in a worker, with its CPU and wall seconds (module level: picklable for the pool)."""
    from iarbre_assets.compute.constraints import run_constraint

    cpu, wall = time.process_time(), time.perf_counter()
    result = run_constraint(task)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def build_tasks(platform, out_root: Path, factors: list | None, communes: list | None, extent: str = "commune"):
    """The ConstraintTasks of assets/constraints.py (same fields, same order), writing under out_root.

    extent "commune" passes the communes layer to the footprint tasks (FootprintTask.communes: only the
    features reaching into the commune); "window" leaves it out (all the features of the window's box).
    """
    from iarbre_assets.assets.constraints import accepted_inputs, communes_layer, factor_code_version
    from iarbre_assets.compute.constraints import (
        ConstraintTask,
        CoverageTask,
        FootprintTask,
        union_method_for,
    )
    from iarbre_assets.store import Store

    factor_rank = {f.slug: i for i, f in enumerate(platform.factors)}
    layer = communes_layer(platform)
    grid = platform.territory.grid
    codes = communes or platform.commune_codes
    tasks = []
    for factor in platform.factors:
        if factors and factor.slug not in factors:
            continue
        out = Store(out_root)
        inputs = accepted_inputs(platform, factor.sources)
        union_method = union_method_for(factor, platform.sources[factor.source].geometry)
        for code in codes:
            window = platform.windows[code]
            fp = FootprintTask(factor=factor, commune=code, window=window, sources=inputs, store=out,
                               union_method=union_method, code_version=factor_code_version(factor),
                               communes=layer if extent == "commune" else None)
            cov = None
            if not factor.display_only:
                cov = CoverageTask(factor=factor.slug, commune=code, window=window, communes=layer, store=out,
                                   subpixel_m=grid.subpixel_m)
            tasks.append(ConstraintTask(footprint=fp, coverage=cov))
    tasks.sort(key=lambda t: -t.size)
    tasks.sort(key=lambda t: factor_rank[t.factor_slug])
    return tasks


def compare_outputs(out_root: Path, reference: Path, slugs: list[str]) -> int:
    import numpy as np

    from iarbre_assets.store import Store
    from iarbre_assets.store.rasters import read_geotiff

    total = 0
    for slug in slugs:
        differing = files = missing = 0
        for path in sorted(Store(out_root).factor_dir(slug).glob("*.tif")):
            other = Store(reference).factor_dir(slug) / path.name
            if not other.exists():
                missing += 1
                continue
            a, wa, _ = read_geotiff(path)
            b, wb, _ = read_geotiff(other)
            files += 1
            differing += int(np.count_nonzero(a != b)) if wa == wb else a.size
        total += differing
        if differing or missing:
            print(f"  {slug:<28s} {files} files compared, {missing} missing in the reference, "
                  f"{differing} cells differ")
    print(f"compared with {reference}: {total} differing cells in all")
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--territory", required=True, help="territory YAML file")
    parser.add_argument("--home", default=os.environ.get("IARBRE_HOME"), help="the home (default: $IARBRE_HOME)")
    parser.add_argument("--factors", help="comma-separated factor slugs (default: all)")
    parser.add_argument("--communes", help="comma-separated commune codes (default: all)")
    parser.add_argument("--out", help="output directory (default: a temporary directory, deleted)")
    parser.add_argument("--workers", type=int, default=0, help="pool size (default: CPU count)")
    parser.add_argument("--compare", help="directory of an earlier run's outputs to compare coverages with")
    parser.add_argument("--extent", choices=("commune", "window"), default="commune",
                        help="features used by a commune's footprint: those reaching into the commune "
                             "(FootprintTask.communes set, default) or into its whole window")
    args = parser.parse_args(argv)
    if not args.home:
        parser.error("set IARBRE_HOME or pass --home")
    from iarbre_assets.compute import pool
    from iarbre_assets.platform import Platform

    started = time.perf_counter()
    pool.configure(args.workers)
    platform = Platform.load(args.home, args.territory)
    factors = args.factors.split(",") if args.factors else None
    communes = args.communes.split(",") if args.communes else None
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="iarbre-constraints-"))
    tasks = build_tasks(platform, out_root, factors, communes, args.extent)
    cells = sum(t.size for t in tasks)
    print(f"{len(tasks)} tasks ({len({t.factor_slug for t in tasks})} factors x "
          f"{len(communes or platform.commune_codes)} communes), {cells / 1e6:.1f} M window cells, "
          f"{pool.worker_count()} workers; set-up {time.perf_counter() - started:.1f} s", flush=True)

    if pool.worker_count() > 1:
        # The platform starts and warms its workers while the definitions load (pool.prestart): do the
        # same, and wait for it, so that the step is timed with warm workers.
        executor = pool._executor(pool.worker_count())
        warm = [executor.submit(pool._warm_worker) for _ in range(pool.worker_count())]
        print(f"workers warmed: pids {sorted({f.result() for f in warm})}", flush=True)

    try:
        with TreeMonitor() as monitor:
            wall = time.perf_counter()
            results = pool.map_tasks(timed_constraint, tasks, size=lambda t: t.size, keep_order=True)
            wall = time.perf_counter() - wall
            monitor.sample()
        per_factor: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        for task, (_, cpu, task_wall) in zip(tasks, results):
            row = per_factor[task.factor_slug]
            row[0] += cpu
            row[1] += task_wall
            row[2] += 1
        print(f"\n{'factor':<28s} {'tasks':>5s} {'CPU s':>8s} {'wall s':>8s}")
        for slug, (cpu, task_wall, count) in per_factor.items():
            print(f"{slug:<28s} {count:5d} {cpu:8.1f} {task_wall:8.1f}")
        print(f"{'all tasks':<28s} {len(tasks):5d} {sum(r[0] for r in per_factor.values()):8.1f} "
              f"{sum(r[1] for r in per_factor.values()):8.1f}")
        print(f"\nwall time of the step:      {wall:8.1f} s")
        print(f"CPU time, process tree:     {monitor.cpu_seconds():8.1f} s")
        print(f"peak RSS, process tree:     {monitor.peak_rss / 2**30:8.2f} GB")
        if args.compare:
            compare_outputs(out_root, Path(args.compare), list(per_factor))
    finally:
        pool.shutdown()
        if not args.out:
            shutil.rmtree(out_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
