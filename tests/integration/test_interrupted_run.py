"""`iarbre run` killed with SIGKILL mid-run leaves no debris: the run shows failed, no worker survives it,
and the rerun's outputs equal those of an uninterrupted run. Waits on progress and process state, with
generous outer bounds, never on a fixed delay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import rasterio

from integration_helpers import demo_data, wait_for
from iarbre_assets.runner import PROCESS_TAG
from iarbre_assets.store import Export, Store
from iarbre_assets.store.files import file_sha256

IARBRE = str(Path(sys.executable).with_name("iarbre"))


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (the run's pool workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _constraints_under_way(store: Store):
    for path in (store.home / "progress").glob("*.jsonl") if (store.home / "progress").is_dir() else ():
        for line in path.read_text().splitlines():
            event = json.loads(line) if line.strip() else {}
            if event.get("stage") == "constraints" and event.get("done", 0) >= 3:
                return path.stem
    return None


def test_a_killed_run_is_marked_failed_leaves_no_worker_and_the_rerun_matches_an_uninterrupted_one(demo_run,
                                                                                                   tmp_path):
    home = tmp_path / "home"
    demo_data(home)
    store = Store(home)
    env = {**os.environ, "IARBRE_WORKERS": "2"}  # a pool of two workers, as on the CI machine
    command = [IARBRE, "run", "--territory", "demo", "--home", str(home)]
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            run_id = wait_for(lambda: process.poll() is None and _constraints_under_way(store),
                           "the run to reach the constraints")
            workers = wait_for(lambda: _children(process.pid), "the pool workers")
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
    wait_for(lambda: not any(_alive(pid) for pid in workers), f"the workers {sorted(workers)} to exit", bound_s=120)

    instance = dg.DagsterInstance.from_config(str(store.dagster_home))
    killed = instance.get_run_by_id(run_id)
    assert killed.status == dg.DagsterRunStatus.STARTED  # what Dagster alone would show forever
    assert killed.tags[PROCESS_TAG].split(":")[1] == str(process.pid)

    rerun = subprocess.run(command, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"run {run_id}: its process was killed" in rerun.stdout + rerun.stderr
    instance = dg.DagsterInstance.from_config(str(store.dagster_home))
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    failure = [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type_value
               == "PIPELINE_FAILURE"]
    assert failure and "is gone" in failure[-1].message

    reference = Store(demo_run.home)
    for export in (Export.SCORE_COG, Export.CLASS_COG):
        assert file_sha256(store.export(export)) == file_sha256(reference.export(export)), export
    for commune in demo_run.platform.commune_codes:
        assert file_sha256(store.score(commune)) == file_sha256(reference.score(commune)), commune
        # the per-commune class raster names the run that wrote it (tag run_id): same pixels, other run
        with rasterio.open(store.classes(commune)) as mine, rasterio.open(reference.classes(commune)) as theirs:
            assert np.array_equal(mine.read(), theirs.read()) and mine.profile == theirs.profile, commune
            assert mine.tags()["run_id"] != theirs.tags()["run_id"]
