"""The cluster profile for real: `iarbre cluster up` starts Postgres, Redis, two Celery workers and the
Dagster daemon on 127.0.0.1; `iarbre run` then runs the demo as a chain of runs whose steps the workers
take. Its outputs must equal the single profile's, and a worker killed with `kill -9` mid-run costs a
re-execution of its step, not the run. Waits on run state and events, with generous outer bounds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import rasterio

from integration_helpers import demo_data, marts_state, wait_for
from iarbre_assets.automation.refresh import CHAIN_TAG
from iarbre_assets.deployment import local_cluster
from iarbre_assets.store import Export, Store
from iarbre_assets.store.files import file_sha256

IARBRE = str(Path(sys.executable).with_name("iarbre"))
pytestmark = pytest.mark.cluster


def _servers_missing() -> list[str]:
    missing = [] if shutil.which("redis-server") else ["redis-server"]
    try:
        local_cluster.postgres_bin("initdb")
    except local_cluster.ClusterError:
        missing.append("postgresql")
    return missing


@pytest.fixture(scope="module")
def cluster_home(tmp_path_factory):
    missing = _servers_missing()
    if missing:
        message = f"the cluster test needs Debian's {' and '.join(missing)} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("cluster_home")
    demo_data(home)
    env = {k: v for k, v in os.environ.items() if k not in ("IARBRE_WORKERS", "DAGSTER_HOME")}
    up = subprocess.run([IARBRE, "cluster", "up", "--home", str(home), "--territory", "demo", "--workers-count", "2",
                         "--communes-per-run", "2"], capture_output=True, text=True, env=env, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield home
    finally:
        subprocess.run([IARBRE, "cluster", "down", "--home", str(home), "--purge"], capture_output=True, env=env,
                       timeout=300)


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(Store(home).dagster_home))


def _chain_runs(instance, chain_id: str):
    return instance.get_runs(dg.RunsFilter(tags={CHAIN_TAG: chain_id}))


def _celery_steps(instance, run_id: str) -> list[tuple[str, str]]:
    """(step, worker) of every step a Celery worker started in the run, in order."""
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data
        if "Celery worker" in data.metadata:
            out.append((entry.dagster_event.step_key, data.metadata["Celery worker"].value))
    return out


def _assert_same_outputs(home: Path, reference_home: Path, communes: list[str]) -> None:
    mine, reference = Store(home), Store(reference_home)
    for export in (Export.SCORE_COG, Export.CLASS_COG):
        assert file_sha256(mine.export(export)) == file_sha256(reference.export(export)), export
    for commune in communes:
        assert file_sha256(mine.score(commune)) == file_sha256(reference.score(commune)), commune
        with rasterio.open(mine.classes(commune)) as a, rasterio.open(reference.classes(commune)) as b:
            assert np.array_equal(a.read(), b.read()) and a.profile == b.profile, commune
    mine_marts, reference_marts = marts_state(home), marts_state(reference_home)
    assert mine_marts.keys() == reference_marts.keys()
    differing = sorted(t for t in mine_marts if mine_marts[t] != reference_marts[t])
    assert not differing, differing


def _chain_of(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("chain "))
    return line.split()[1]


def test_the_cluster_runs_the_demo_on_postgres_and_two_workers_with_the_single_profile_outputs(demo_run,
                                                                                               cluster_home):
    result = subprocess.run([IARBRE, "run", "--home", str(cluster_home)], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    instance = _instance(cluster_home)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

    runs = _chain_runs(instance, _chain_of(result.stdout))
    assert len(runs) == 4 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                    for r in runs if "dagster/asset_partition_range_start" in r.tags)
    assert ranges == [("99101", "99102"), ("99103", "99103")]  # a run per batch of two communes
    steps = [s for r in runs for s in _celery_steps(instance, r.run_id)]
    assert {worker.partition("@")[0] for _, worker in steps} == {"worker1", "worker2"}
    constraints = [worker for step, worker in steps if step == "constraints"]
    assert len(constraints) == 2  # the two batches' per-commune work, each on a worker

    _assert_same_outputs(cluster_home, demo_run.home, demo_run.platform.commune_codes)

    report = subprocess.run([IARBRE, "report", "--home", str(cluster_home), "--commune", "99101"],
                            capture_output=True, text=True)
    assert report.returncode == 0 and "Scored cells" in report.stdout


def test_a_worker_killed_with_kill_9_mid_run_costs_a_step_not_the_run(demo_run, cluster_home):
    instance = _instance(cluster_home)
    before = {r.run_id for r in instance.get_runs()}
    paths = local_cluster.cluster_paths(Store(cluster_home).dagster_home)
    with open(cluster_home / "killed-worker-run.log", "w") as log:
        process = subprocess.Popen([IARBRE, "run", "--home", str(cluster_home)], stdout=log, stderr=subprocess.STDOUT)
        try:
            def constraints_started():
                for run in instance.get_runs():
                    if run.run_id in before:
                        continue
                    for step, worker in _celery_steps(instance, run.run_id):
                        if step == "constraints":
                            return run.run_id, worker
                return None

            run_id, worker = wait_for(lambda: process.poll() is None and constraints_started(),
                                      "a worker to start the constraints", bound_s=900.0, every_s=0.5)
            name = worker.partition("@")[0]
            pid = int(paths.worker_pid(name).read_text())
            os.killpg(pid, signal.SIGKILL)  # the worker and anything it started
            returncode = process.wait(timeout=1800)
        finally:
            if process.poll() is None:
                process.kill()
    output = (cluster_home / "killed-worker-run.log").read_text()
    assert returncode == 0, output[-4000:]

    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    attempts = [w for step, w in _celery_steps(instance, run_id) if step == "constraints"]
    # taken by the killed worker, then handed back by the broker to the survivor
    assert len(attempts) == 2 and attempts[0] == worker and attempts[1] != worker, attempts
    chain = _chain_runs(instance, run.tags[CHAIN_TAG])
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in chain)

    _assert_same_outputs(cluster_home, demo_run.home, demo_run.platform.commune_codes)
    status = subprocess.run([IARBRE, "cluster", "status", "--home", str(cluster_home), "--json"],
                            capture_output=True, text=True)
    assert f'"{worker}"' not in status.stdout and '"worker' in status.stdout, status.stdout
