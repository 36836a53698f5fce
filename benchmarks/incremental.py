"""A partner update through the real route, against a full run, in the same benchmark.

    .venv/bin/python benchmarks/incremental.py --scale full [--home /tmp/iarbre-incr-full] [--share 0.05]
    .venv/bin/python benchmarks/incremental.py --scale small            # the built-in demo

1. A full run from the partners' files (`iarbre run` on a fresh home: ingest, constraints, score, classes,
   tiles, exports, warehouse, dbt marts): its wall time is "full".
2. `dagster-daemon run` on that home: the sensors run as they do under `iarbre ui`.
3. GRDF drops a new gas network in `inbox/grdf/` in which `--share` of the features, all inside three
   communes, moved by 2 m. Timed from the drop until the refresh the daemon launched after the ingest has
   succeeded (one run, or the chain of runs when the communes are not one range of partition keys): every output consistent, marts and the `marts_match_outputs` check included. Printed with
   its parts (sensor latency, ingest run, refresh sensor latency, refresh run) and the ratio to the full run.
Targets: incremental ≤ 10 % of full at full scale; ≤ 60 s from drop to marts on the demo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from measure import TreeMemory  # noqa: E402


def bin_(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def full_run(home: Path, territory: str) -> float:
    started = time.perf_counter()
    with subprocess.Popen([bin_("iarbre"), "run", "--home", str(home), "--territory", territory], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        with TreeMemory(process.pid) as memory:
            output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        print(output[-4000:])
        raise SystemExit("the full run failed")
    print(f"full run (`iarbre run`, fresh home, raw to marts and exports): {wall:.1f} s, "
          f"peak RSS {memory.peak / 1e9:.2f} GB", flush=True)
    return wall


def changed_network(platform, share: float):
    """The accepted gas network with `share` of its features moved by 2 m, all inside three communes."""
    import geopandas as gpd

    store = platform.store
    frame = gpd.read_parquet(store.versions("ore_gaz").current().data_path(store))
    communes = platform.communes.set_index("code").geometry
    counts = {c: int(frame.geometry.within(g.buffer(-50)).sum()) for c, g in communes.items()}
    chosen = sorted(counts, key=counts.get, reverse=True)[:3]
    wanted = max(1, int(round(share * len(frame))))
    # the same number from each commune, so the change really touches all three
    per_commune = [list(frame.index[frame.geometry.within(communes[c].buffer(-50))]) for c in chosen]
    moved = []
    while len(moved) < wanted and any(per_commune):
        for features in per_commune:
            if features and len(moved) < wanted:
                moved.append(features.pop(0))
    chosen = [c for c, g in zip(chosen, (communes[c] for c in chosen))
              if frame.loc[moved].geometry.within(g.buffer(-50)).any()]
    frame.loc[moved, "geometry"] = frame.loc[moved, "geometry"].translate(xoff=2.0)
    return frame, chosen, len(moved), len(frame)


def wait_for(instance, tag: str, after: float, stalled_after: float = 1800):
    """The first run tagged iarbre/trigger=<tag> created after `after`, once finished."""
    import dagster as dg

    deadline = time.time() + stalled_after
    while time.time() < deadline:
        for record in instance.get_run_records(dg.RunsFilter(tags={"iarbre/trigger": tag}), limit=5):
            if record.create_timestamp.timestamp() >= after and record.dagster_run.is_finished:
                return record
        time.sleep(0.5)
    raise SystemExit(f"no finished run tagged {tag} after {stalled_after:.0f} s")


def wait_for_chain(instance, after: float, stalled_after: float = 1800) -> list:
    """The refresh runs created after `after`, once the last step of their chain (tag n/n) has finished."""
    import dagster as dg

    deadline = time.time() + stalled_after
    while time.time() < deadline:
        records = [r for r in instance.get_run_records(dg.RunsFilter(tags={"iarbre/trigger": "refresh"}), limit=20)
                   if r.create_timestamp.timestamp() >= after]
        records.sort(key=lambda r: r.create_timestamp)
        failed = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
        if failed:
            raise SystemExit(f"refresh run {failed[0].dagster_run.run_id} failed: see the UI")
        number, _, total = (records[-1].dagster_run.tags.get("iarbre/refresh_step", "1/1") if records else "0/1").partition("/")
        if records and number == total and records[-1].dagster_run.is_finished:
            return records
        time.sleep(0.5)
    raise SystemExit(f"the refresh chain did not finish within {stalled_after:.0f} s")


def sensors_ready(instance) -> bool:
    states = {s.instigator_name: s for s in instance.all_instigator_state()}
    state = states.get("partner_refresh")
    return bool(state and state.instigator_data and getattr(state.instigator_data, "cursor", None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "full"], default="small")
    parser.add_argument("--home", help="a fresh home for the benchmark (default /tmp/iarbre-incr-<scale>)")
    parser.add_argument("--share", type=float, default=0.05, help="share of the gas features moved")
    args = parser.parse_args()
    home = Path(args.home or f"/tmp/iarbre-incr-{args.scale}").resolve()
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([bin_("iarbre"), "dbt-prepare"], cwd=REPO, check=True, capture_output=True)
    if args.scale == "small":
        subprocess.run([bin_("iarbre-demo"), "--home", str(home)], check=True, capture_output=True)
        territory = "demo"
    else:
        data = Path("/tmp/iarbre-full-data")
        subprocess.run([bin_("iarbre-demo"), "--scale", "full", "--out", str(data), "--if-missing"], check=True)
        territory = str(data / "territory.yaml")
    full = full_run(home, territory)

    import dagster as dg

    from iarbre_assets.cli import subprocess_env
    from iarbre_assets.resources import TerritoryResource

    resource = TerritoryResource(home=str(home), territory=territory)
    instance = dg.DagsterInstance.from_config(str(resource.store.dagster_home))
    frame, chosen, moved, total = changed_network(resource.platform, args.share)
    log = open(home / "daemon.log", "w")
    daemon = subprocess.Popen([bin_("dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO,
                              env=subprocess_env(resource), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        started = time.time()
        while not sensors_ready(instance):
            if daemon.poll() is not None:
                raise SystemExit(f"dagster-daemon exited: see {log.name}")
            time.sleep(0.5)
        print(f"daemon ready in {time.time() - started:.1f} s (sensors watching)", flush=True)
        staging = resource.store.inbox("grdf") / ".ore_gaz.part.geojson"
        staging.parent.mkdir(parents=True, exist_ok=True)
        frame.to_file(staging, driver="GeoJSON", engine="pyogrio")
        drop_at = time.time()
        staging.rename(resource.store.inbox("grdf") / "ore_gaz.geojson")
        print(f"dropped: {moved} of {total} gas features moved ({moved / total:.1%}) in communes {chosen}", flush=True)
        ingest = wait_for(instance, "partner_inbox", drop_at - 1)
        chain = wait_for_chain(instance, ingest.create_timestamp.timestamp() - 1)
        done_at = chain[-1].end_time
        if ingest.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"ingest {ingest.dagster_run.status}: see the UI")
        materialised = {}
        for record in chain:
            for event in instance.get_records_for_run(record.dagster_run.run_id,
                                                      of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
                key = event.event_log_entry.dagster_event.asset_key.path[0]
                materialised[key] = materialised.get(key, 0) + 1
        incremental = done_at - drop_at
        print()
        print(f"drop -> ingest run starts   {ingest.start_time - drop_at:6.1f} s (inbox sensor, run launch)")
        print(f"ingest run                  {ingest.end_time - ingest.start_time:6.1f} s")
        print(f"ingest end -> refresh starts {chain[0].start_time - ingest.end_time:5.1f} s (refresh sensor, run launch)")
        previous_end = None
        for record in chain:
            run = record.dagster_run
            gap = f", {record.start_time - previous_end:.1f} s after the previous step" if previous_end else ""
            span = run.tags.get("dagster/asset_partition_range_start")
            span = f" communes {span}..{run.tags.get('dagster/asset_partition_range_end')}" if span else ""
            print(f"refresh run {run.tags.get('iarbre/refresh_step', '1/1'):>5}           "
                  f"{record.end_time - record.start_time:6.1f} s{span}{gap}")
            previous_end = record.end_time
        print(f"refresh: {len(chain)} run(s) materialised {', '.join(f'{k} {v}' for k, v in sorted(materialised.items()))}")
        print(f"\nincremental, drop to every output consistent (marts included): {incremental:.1f} s")
        print(f"full run: {full:.1f} s   ratio {incremental / full:.1%}   "
              + ("(target at full scale: <= 10 %)" if args.scale == "full" else "(target on the demo: <= 60 s)"))
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
