"""Materialise a selection of the asset graph in one Dagster run, recorded in the instance.

Used by `iarbre run`, `iarbre refresh`, the benchmarks and the tests. The run is a normal Dagster run, so
the UI shows it, its materialisations, checks and lineage afterwards. Progress is shown from the first
second (progress.py): the stage and the work done out of the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SelectionError(ValueError):
    pass


# The process executing an in-process run: host, pid and the pid's start time (pids are reused).
PROCESS_TAG = "iarbre/process"


def process_identity(pid: int | None = None) -> str:
    import os
    import socket

    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), '' when unknown."""
    from pathlib import Path

    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _alive(identity: str) -> bool:
    import os
    import socket

    host, _, rest = identity.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's run: not ours to judge
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not ticks or _start_ticks(pid) == ticks


def sweep_interrupted_runs(instance) -> list[str]:
    """Mark failed the in-process runs whose process is gone (a `kill -9` of `iarbre run`): Dagster's run
    monitoring watches the runs the daemon launched, not those executed in a CLI process. Returns their ids."""
    import dagster as dg

    swept = []
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                               dg.DagsterRunStatus.STARTING]))
    for record in records:
        run = record.dagster_run
        identity = run.tags.get(PROCESS_TAG)
        if identity is None or _alive(identity):
            continue
        pid = identity.split(":")[1]
        instance.report_run_failed(run, message=f"the process that ran it (pid {pid}) is gone, killed before the run "
                                                "ended; marked failed by iarbre. Its outputs were never published: "
                                                "rerun the same selection.")
        swept.append(run.run_id)
    return swept


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    materialised: dict[str, int] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)
    result: object = None
    runs: list[str] = field(default_factory=list)  # on the cluster: the chain's runs (run_id is the chain's)


def resolve_selection(defs, select) -> tuple[list | None, list[str]]:
    """Asset keys to run for `select` (a Dagster selection string, or a list of keys), and the keys left out
    because nothing can materialise them (external assets such as partner inboxes)."""
    import dagster as dg

    if not select:
        return None, []
    graph = defs.resolve_asset_graph()
    if isinstance(select, str):
        try:
            keys = dg.AssetSelection.from_string(select).resolve(graph)
        except (dg.DagsterInvalidAssetSelectionError, dg.DagsterInvalidSubsetError, ValueError) as exc:
            raise SelectionError(f"--select {select!r}: {exc} (e.g. 'group:score' or 'key:tiles')") from None
    else:
        keys = {dg.AssetKey.from_coercible(k) for k in select}
    runnable = sorted((k for k in keys if graph.get(k).is_executable), key=lambda k: k.to_user_string())
    trimmed = sorted(k.to_user_string() for k in keys if not graph.get(k).is_executable)
    if not runnable:
        raise SelectionError(f"--select {select!r} selects no asset that can run (only {', '.join(trimmed)})")
    return runnable, trimmed


def materialise(defs, territory, instance, select=None, tags: dict | None = None, partitions=None,
                view=None, log_level: str = "WARNING") -> RunOutcome:
    """Materialise every asset (or a selection) for all communes (or `partitions`, a contiguous (first, last)
    range of commune codes) in one in-process run of the code location's implicit asset job; on the cluster
    profile, in the chain of runs of `run_on_cluster`."""
    from dagster._core.utils import make_new_run_id

    from .compute.pool import prestart
    from .deployment.profiles import load_profile
    from .progress import following

    platform = territory.platform
    selection, trimmed = resolve_selection(defs, select)
    codes = platform.commune_codes
    first, last = partitions or (codes[0], codes[-1])
    # Dagster's step-by-step DEBUG lines go to the run's event log (see the UI); the console gets warnings.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    run_tags = {"iarbre/territory": platform.territory.name, PROCESS_TAG: process_identity(), **(tags or {})}
    if load_profile(territory.store.dagster_home).name == "cluster":  # each run of the chain has its own range
        outcome = run_on_cluster(defs, territory, instance, selection, [c for c in codes if first <= c <= last],
                                 run_tags, run_config)
        outcome.trimmed = trimmed
        return outcome

    prestart()  # workers import the geo stack and GX while this process sets the run up
    graph = defs.resolve_asset_graph()
    partitioned = selection is None or any(graph.get(k).partitions_def is not None for k in selection)
    if partitioned:
        run_tags.update({"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    run_id = make_new_run_id()
    job = defs.resolve_implicit_global_asset_job_def()
    progress = territory.progress(run_id)
    progress.emit("run started", note=f"run {run_id[:8]}, {len(selection) if selection else 'all'} assets"
                                      + (f", communes {first}..{last}" if partitioned else ""))
    def execute():
        return job.execute_in_process(instance=instance, tags=run_tags, raise_on_error=False, run_config=run_config,
                                      asset_selection=selection, run_id=run_id)

    if view is None:
        result = execute()
    else:
        with following(progress.path, view):
            result = execute()
    outcome = summarise(result)
    outcome.trimmed = trimmed
    return outcome


def cluster_phases(graph, keys, codes: list[str], batch: int) -> list[list[tuple[list, tuple | None]]]:
    """The runs of a cluster chain, phase by phase: the territory-wide assets the per-commune ones read
    (the sources), then the per-commune assets in batches of `batch` communes (the runs of a phase run at
    once), then every other territory-wide asset (mosaics, exports, warehouse, marts: dbt once)."""
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    if not partitioned:
        return [[(list(keys), None)]]
    upstream: set = set()
    frontier = list(partitioned)
    while frontier:
        for parent in graph.get(frontier.pop()).parent_keys:
            if parent not in upstream:
                upstream.add(parent)
                frontier.append(parent)
    chosen = set(partitioned)
    before = [k for k in keys if k not in chosen and k in upstream]
    after = [k for k in keys if k not in chosen and k not in upstream]
    phases = [[(before, None)]] if before else []
    phases.append([(partitioned, (codes[i], codes[min(i + batch, len(codes)) - 1]))
                   for i in range(0, len(codes), batch)])
    if after:
        phases.append([(after, None)])
    return phases


def run_on_cluster(defs, territory, instance, selection, codes: list[str], tags: dict, run_config,
                   out=None) -> RunOutcome:
    """The cluster profile's `iarbre run`: a chain of Dagster runs (cluster_phases). Each run executes in its
    own Dagster run worker (`dagster api execute_run`, the process Dagster's run launchers start), whose
    Celery executor sends every step to a worker. The runs of a phase run at once, up to the profile's
    concurrent runs. (Dagster's run execution is not thread-safe: two runs in one process deadlock on the
    logging locks, so each has its process.)"""
    import sys
    import time

    from dagster._core.utils import make_new_run_id

    from .automation.refresh import CHAIN_TAG
    from .deployment.profiles import load_profile

    out = out or sys.stderr
    profile = load_profile(territory.store.dagster_home)
    graph = defs.resolve_asset_graph()
    keys = selection or sorted((k for k in graph.get_all_asset_keys() if graph.get(k).is_executable),
                               key=lambda k: k.to_user_string())
    phases = cluster_phases(graph, keys, codes, profile.communes_per_run)
    chain_id = make_new_run_id()
    total = sum(len(p) for p in phases)
    outcome = RunOutcome(success=True, run_id=chain_id)
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=out, flush=True)

    number = 0
    for phase in phases:
        waiting, running, finished = list(phase), {}, []
        while waiting or running:
            while waiting and len(running) < profile.max_concurrent_runs:
                run_keys, span = waiting.pop(0)
                number += 1
                run_tags = {**tags, CHAIN_TAG: chain_id, "iarbre/chain_step": f"{number}/{total}"}
                if span:
                    run_tags.update({"dagster/asset_partition_range_start": span[0],
                                     "dagster/asset_partition_range_end": span[1]})
                run_id = make_new_run_id()
                running[run_id] = _launch_run_worker(defs, territory, instance, run_keys, run_tags, run_config,
                                                     run_id)
                say(f"run {number}/{total} {run_id[:8]}: {len(run_keys)} assets"
                    + (f", communes {span[0]}..{span[1]}" if span else ""))
            for run_id, process in list(running.items()):
                if process.poll() is not None:
                    del running[run_id]
                    finished.append(run_id)
                    run = instance.get_run_by_id(run_id)
                    if not run.is_finished:  # the worker died before it could say so
                        instance.report_run_failed(run, message=f"its run worker exited with code "
                                                                f"{process.returncode} before the run ended")
                        run = instance.get_run_by_id(run_id)
                    say(f"run {run_id[:8]} {run.status.value.lower()}")
            time.sleep(0.5)
        for run_id in finished:
            _add(outcome, summarise(_LoggedRun(instance, instance.get_run_by_id(run_id))))
        if not outcome.success:
            break  # nothing downstream is computed from a failed phase
    return outcome


class _LoggedRun:
    """A finished run as `summarise` reads it, from the instance's event log."""

    def __init__(self, instance, run):
        self.run_id = run.run_id
        self.success = run.status.value == "SUCCESS"
        self.all_events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]

    def get_asset_materialization_events(self):
        return [e for e in self.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]


def _add(outcome: RunOutcome, part: RunOutcome) -> None:
    outcome.runs.append(part.run_id)
    outcome.success &= part.success
    for key, count in part.materialised.items():
        outcome.materialised[key] = outcome.materialised.get(key, 0) + count
    for key, (passed, total) in part.checks.items():
        before = outcome.checks.get(key, (0, 0))
        outcome.checks[key] = (before[0] + passed, before[1] + total)
    outcome.failed_steps += part.failed_steps
    outcome.failures += part.failures
    outcome.failed_checks += part.failed_checks


def _launch_run_worker(defs, territory, instance, keys, tags, run_config, run_id):
    """Create the run, then start Dagster's run worker for it with this territory's configuration (the
    variables TerritoryResource.from_env reads); the worker dies with this process, so a killed
    `iarbre run` leaves no run worker, and the next command marks the run failed."""
    import os
    import subprocess
    import sys

    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import serialize_value

    from .deployment.local_cluster import cluster_paths

    job = defs.resolve_implicit_global_asset_job_def()
    origin = ReconstructableRepository.for_module("iarbre_assets.definitions", "defs").get_reconstructable_job(
        job.name).get_python_origin()
    instance.create_run_for_job(job_def=job, run_id=run_id, run_config=run_config, tags=tags,
                                job_code_origin=origin, asset_selection=frozenset(keys))
    args = ExecuteRunArgs(job_origin=origin, run_id=run_id, instance_ref=instance.get_ref(),
                          set_exit_code_on_failure=True)
    # the arguments go in the environment (DAGSTER_EXECUTE_RUN_ARGS), not on the command line
    command = [sys.executable, "-m", "dagster", "api", "execute_run"]
    logs = cluster_paths(territory.store.dagster_home).logs
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **territory.environment(), "DAGSTER_EXECUTE_RUN_ARGS": serialize_value(args)}
    with open(logs / f"run-{run_id}.log", "ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def summarise(result) -> RunOutcome:
    outcome = RunOutcome(success=result.success, run_id=result.run_id, result=result)
    for event in result.get_asset_materialization_events():
        top = event.asset_key.path[0]
        outcome.materialised[top] = outcome.materialised.get(top, 0) + 1
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            outcome.failed_steps.append(event.step_key)
            info = event.step_failure_data.error
            while info is not None and info.cause is not None:  # the user's exception, not Dagster's wrapper
                info = info.cause
            message = info.message.strip() if info else ""
            user = event.step_failure_data.user_failure_data
            if user and user.description:
                message = user.description
            outcome.failures.append(f"{event.step_key}: {message.splitlines()[0] if message else 'failed'}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            key = evaluation.asset_key.path[0]
            passed, total = outcome.checks.get(key, (0, 0))
            outcome.checks[key] = (passed + int(evaluation.passed), total + 1)
            if not evaluation.passed:
                severity = "blocking" if evaluation.severity.value == "ERROR" else "warning"
                outcome.failed_checks.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} "
                                             f"({severity})")
                if severity == "blocking":
                    outcome.success = False
    return outcome


def print_run_summary(outcome: RunOutcome, elapsed: float, store) -> None:
    from pathlib import Path

    from .store import Export

    status = "succeeded" if outcome.success else "FAILED"
    if outcome.runs:
        print(f"\nchain {outcome.run_id} {status} in {elapsed:.1f} s: {len(outcome.runs)} runs "
              f"({', '.join(r[:8] for r in outcome.runs)})")
    else:
        print(f"\nrun {outcome.run_id} {status} in {elapsed:.1f} s")
    if outcome.trimmed:
        print(f"left out of the selection (nothing can materialise them): {', '.join(outcome.trimmed)}")
    print("materialisations: " + (", ".join(f"{k} {v}" for k, v in sorted(outcome.materialised.items())) or "none"))
    checks = ", ".join(f"{k} {p}/{t}" for k, (p, t) in sorted(outcome.checks.items()))
    print(f"checks passed: {checks or 'none ran'}")
    for failure in outcome.failures:
        print(f"  failed: {failure}")
    for check in outcome.failed_checks:
        print(f"  check failed: {check}")
    outputs = [(e.label, store.export(e)) for e in Export]
    outputs += [("warehouse (DuckDB: tiles, marts)", store.warehouse), ("raw store", store.raw.root)]
    print("\noutputs:")
    for label, path in outputs:
        mark = "" if Path(path).exists() else "  (missing)"
        print(f"  {label:34s} {path}{mark}")
    print("\nDagster UI (lineage, checks, versions of this run):")
    print(f"  .venv/bin/iarbre ui --home {store.home}      then open http://127.0.0.1:3000")
    print(f"Commune summary:  .venv/bin/iarbre report --home {store.home} --commune <INSEE code>")


def run_plan(defs, territory, instance, plan, view=None, tags: dict | None = None) -> list[RunOutcome]:
    """Execute a refresh plan in this process, as the refresh sensor would: one run when it is one commune
    range (the usual case), else the chain of `automation.refresh.refresh_steps`, one run at a time."""
    from .automation.refresh import step_request, refresh_steps

    steps = refresh_steps(plan, defs.resolve_asset_graph(), territory.platform.commune_codes)
    outcomes = []
    for number, step in enumerate(steps, start=1):
        request = step_request(step, plan, number, len(steps), tags=tags)
        run_tags = {k: v for k, v in request.tags.items() if not k.startswith("dagster/asset_partition_range")}
        outcomes.append(materialise(defs, territory, instance, select=list(step.keys), tags=run_tags,
                                    partitions=step.span, view=view))
    return outcomes


def refresh(defs, territory, instance, sources: list[str] | None = None, view=None) -> dict:
    """`iarbre refresh`: probe remote sources now (all, or `sources`), take pending inbox drops, ingest what
    changed, then bring every output up to date. Returns what was done, run by run."""
    from .automation import polls
    from .automation.refresh import plan_after
    from .automation.sensors import scan_inbox

    platform = territory.platform
    unknown = sorted(set(sources or ()) - set(platform.sources))
    if unknown:
        raise SelectionError(f"unknown source(s) {unknown}; sources: {', '.join(sorted(platform.sources))}")
    remote = [s for s in polls.remote_sources(platform) if not sources or s.slug in sources]
    to_fetch, probes = polls.probe(platform, remote)
    candidates, set_aside = scan_inbox(platform)
    dropped = {v.source for v in candidates if not sources or v.source in sources}
    selected = sorted(set(to_fetch) | dropped)
    report = {"probes": probes, "drops": sorted(dropped), "set_aside": set_aside, "runs": []}
    if not selected:
        return report
    keys = [k for s in selected for k in (["raw", s], ["source", s])]
    ingest = materialise(defs, territory, instance, select=keys, tags={"iarbre/trigger": "refresh_cli"}, view=view)
    report["runs"].append(ingest)
    plan = plan_after(instance, defs.resolve_asset_graph(), ingest.runs[-1] if ingest.runs else ingest.run_id)
    report["plan"] = plan
    report["runs"] += run_plan(defs, territory, instance, plan, view=view)
    return report
