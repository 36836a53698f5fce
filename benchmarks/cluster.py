"""The cluster profile against the single profile, in the same benchmark, on the same territory.

    .venv/bin/python benchmarks/cluster.py [--scale full|small] [--workers 2] [--communes-per-run 8]

1. generates the territory (full: the synthetic metropole, ~59 communes, in /tmp/iarbre-full-data; small:
   the demo) or reuses it;
2. single: a fresh home, `iarbre run` (one run, in-process executor, a pool of one process per CPU);
3. cluster: a fresh home, `iarbre cluster up` (Postgres, Redis, N Celery workers of one core each and the
   Dagster daemon on 127.0.0.1), then `iarbre run` (a chain of runs: sources, per-commune batches at
   once, territory outputs; every step a Celery task);
4. prints, for both, from each instance's event log:
   - the wall time of `iarbre run` (what the user waits for: ingest, constraints, score, classes, tiles,
     mosaics, exports, marts), and the cluster's start-up time apart;
   - the per-commune cost of each per-commune step (step time x its processes / communes);
   - the orchestration overhead: run time not spent inside a step (planning, launching, events, Celery queue
     and pick-up, the job rebuilt on the worker), in total and per commune partition;
   - the event-log growth: events written, per run and per commune partition, and the database size.
Both homes run the same code on the same 2-core machine; the cluster's workers are processes on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from measure import TreeMemory  # noqa: E402

PER_COMMUNE_STEPS = ("constraints", "plantability_score", "plantability_class", "tiles")


def bin_(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def timed_run(home: Path, territory: str, env: dict) -> tuple[float, int, str]:
    memory = TreeMemory()
    started = time.perf_counter()
    with memory:
        result = subprocess.run([bin_("iarbre"), "run", "--home", str(home), "--territory", territory],
                                capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    (home / "run.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"iarbre run failed on {home}: see {home / 'run.log'}\n{result.stdout[-2000:]}")
    return wall, memory.peak, result.stdout


def run_figures(instance, run_ids: list[str], communes: int) -> dict:
    """Step times, overhead and events of the given runs, from the instance's event log."""
    import dagster as dg

    steps, overhead, events, partition_runs, queue_wait = {}, 0.0, 0, 0, 0.0
    wall_total = 0.0
    for run_id in run_ids:
        record = instance.get_run_record_by_id(run_id)
        logs = instance.all_logs(run_id)
        events += len(logs)
        start, end = record.start_time, record.end_time
        wall_total += end - start
        opened, inside, submitted = {}, 0.0, {}
        for entry in logs:
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind == "ENGINE_EVENT" and entry.message.startswith("Submitting celery task"):
                submitted[event.step_key] = entry.timestamp
            elif kind == "ENGINE_EVENT" and "in celery worker" in entry.message and event.step_key in submitted:
                queue_wait += entry.timestamp - submitted.pop(event.step_key)
            elif kind == "STEP_START":
                opened[event.step_key] = entry.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in opened:
                took = entry.timestamp - opened.pop(event.step_key)
                inside += took
                steps[event.step_key] = steps.get(event.step_key, 0.0) + took
        run = instance.get_run_by_id(run_id)
        if "dagster/asset_partition_range_start" in run.tags:
            partition_runs += 1
        overhead += (end - start) - inside
    per_commune = {s: steps[s] / communes for s in PER_COMMUNE_STEPS if s in steps}
    return {"runs": len(run_ids), "run_time_s": wall_total, "steps_s": steps, "per_commune_s": per_commune,
            "overhead_s": overhead, "overhead_per_partition_s": overhead / communes,
            "celery_queue_wait_s": queue_wait, "events": events, "events_per_partition": events / communes}


def database_bytes(home: Path, profile_name: str) -> int:
    if profile_name == "single":
        return sum(p.stat().st_size for p in (home / "dagster").rglob("*.db*") if p.is_file())
    import sqlalchemy

    from iarbre_assets.deployment.profiles import load_profile

    engine = sqlalchemy.create_engine(load_profile(home / "dagster").postgres_url)
    with engine.connect() as conn:
        size = conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return int(size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "full"], default="full")
    parser.add_argument("--root", default="/tmp/iarbre-cluster-bench", help="where the two homes go")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (one core each)")
    parser.add_argument("--communes-per-run", type=int, default=8)
    args = parser.parse_args()
    root = Path(args.root)
    for name in ("single", "cluster"):
        if (root / name / "cluster").exists():
            subprocess.run([bin_("iarbre"), "cluster", "down", "--home", str(root / name), "--purge"],
                           capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run([bin_("iarbre"), "dbt-prepare"], cwd=REPO, check=True, capture_output=True)
    if args.scale == "full":
        data = Path("/tmp/iarbre-full-data")
        subprocess.run([bin_("iarbre-demo"), "--scale", "full", "--out", str(data), "--if-missing"], check=True)
        territory = str(data / "territory.yaml")
    else:
        data = root / "demo-data"
        subprocess.run([bin_("iarbre-demo"), "--out", str(data), "--if-missing"], check=True, capture_output=True)
        territory = str(data / "territory.yaml")

    import dagster as dg

    env = {k: v for k, v in os.environ.items() if not k.startswith(("IARBRE_", "DAGSTER_HOME"))}
    results = {}

    home = root / "single"
    wall, peak, _ = timed_run(home, territory, env)
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    communes = len(_communes(home))
    runs = [r.run_id for r in instance.get_runs()]
    results["single"] = {"wall_s": wall, "peak_rss_gb": peak / 1e9, **run_figures(instance, runs, communes),
                         "database_bytes": database_bytes(home, "single")}

    home = root / "cluster"
    started = time.perf_counter()
    up = subprocess.run([bin_("iarbre"), "cluster", "up", "--home", str(home), "--territory", territory,
                         "--workers-count", str(args.workers), "--cores", "1",
                         "--communes-per-run", str(args.communes_per_run)], capture_output=True, text=True, env=env)
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    startup = time.perf_counter() - started
    try:
        before = database_bytes(home, "cluster")
        wall, peak, _ = timed_run(home, territory, env)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        runs = [r.run_id for r in instance.get_runs()]
        results["cluster"] = {"wall_s": wall, "startup_s": startup, "peak_rss_gb_cli": peak / 1e9,
                              **run_figures(instance, runs, communes),
                              "database_bytes": database_bytes(home, "cluster"), "database_bytes_before": before}
    finally:
        subprocess.run([bin_("iarbre"), "cluster", "down", "--home", str(home), "--purge"], capture_output=True,
                       env=env)

    single, cluster = results["single"], results["cluster"]
    print(f"\n{communes} communes ({args.scale}); cluster: {args.workers} Celery workers x 1 core, "
          f"{args.communes_per_run} communes per run; same 2-core machine")
    print(f"{'':38s} {'single':>12s} {'cluster':>12s}")
    rows = [("iarbre run wall (s)", "wall_s", "{:.1f}"), ("runs", "runs", "{}"),
            ("time inside steps (s)", None, "{:.1f}"),
            ("orchestration overhead (s)", "overhead_s", "{:.1f}"),
            ("  per commune partition (s)", "overhead_per_partition_s", "{:.2f}"),
            ("  of which Celery queue + pick-up (s)", "celery_queue_wait_s", "{:.1f}"),
            ("events written", "events", "{}"), ("  per commune partition", "events_per_partition", "{:.0f}"),
            ("event database (MB)", "database_bytes", None)]
    for label, key, fmt in rows:
        if key is None and fmt:
            values = [sum(r["steps_s"].values()) for r in (single, cluster)]
            print(f"{label:38s} {values[0]:12.1f} {values[1]:12.1f}")
        elif fmt is None:
            print(f"{label:38s} {single[key] / 1e6:12.1f} {(cluster[key] - cluster['database_bytes_before']) / 1e6:12.1f}"
                  "   (cluster: growth during the run)")
        else:
            print(f"{label:38s} {fmt.format(single[key]):>12s} {fmt.format(cluster[key]):>12s}")
    print("per-commune cost of each step (step seconds / communes):")
    for step in PER_COMMUNE_STEPS:
        print(f"  {step:36s} {single['per_commune_s'].get(step, 0):12.2f} {cluster['per_commune_s'].get(step, 0):12.2f}")
    print(f"cluster start-up (iarbre cluster up, outside the run): {cluster['startup_s']:.1f} s")
    print(f"peak RSS of the iarbre run process tree: single {single['peak_rss_gb']:.2f} GB; cluster CLI "
          f"{cluster['peak_rss_gb_cli']:.2f} GB (the workers are not its children)")
    (root / "figures.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"figures: {root / 'figures.json'}")
    return 0


def _communes(home: Path) -> list[str]:
    from iarbre_assets.resources import TerritoryResource

    known = json.loads((home / "iarbre.json").read_text())
    resource = TerritoryResource(home=str(home), territory=known["territory"], data_dir=known["data_dir"])
    return resource.platform.commune_codes


if __name__ == "__main__":
    sys.exit(main())
