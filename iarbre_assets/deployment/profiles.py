"""Deployment profiles: one machine, or Dagster's distributed pieces, chosen by configuration.

    single   consolidated SQLite storage (instance_storage.py), the in-process executor; per-commune work
             is spread over the host's worker pool inside each step.
    cluster  dagster-postgres for runs, events and schedules; the queued run coordinator with tag
             concurrency limits; dagster-celery's executor, whose steps are Celery tasks (Redis broker)
             taken by worker processes that may run on other hosts; each worker spreads its step's
             communes over its own host's pool.

A home's profile lives in <DAGSTER_HOME>/profile.json; `iarbre instance` or `iarbre cluster up` writes it,
and dagster.yaml is always derived from it (never edited by hand). The Celery settings are one dict shared
by the executor (the run side) and the workers' config module, so both sides agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

PROFILE_FILE = "profile.json"
PROFILES = ("single", "cluster")

# Steps are acknowledged when they finish, not when a worker takes them, and a task whose worker dies is
# handed back to the queue: a `kill -9` of a worker costs a re-execution of its step, never the run.
# Redis hands an unacknowledged task to another worker after the visibility timeout.
VISIBILITY_TIMEOUT_S = 30
CELERY_SETTINGS = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
    "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
}


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    """name: single or cluster; the cluster's Postgres URL, Celery broker and result backend; how many runs
    the queue starts at once; how many communes a backfill run covers on the cluster (its batch)."""

    name: str = "single"
    postgres_url: str | None = None
    broker_url: str | None = None
    backend_url: str | None = None
    max_concurrent_runs: int = 2
    communes_per_run: int = 8

    def __post_init__(self):
        if self.name not in PROFILES:
            raise ProfileError(f"unknown profile {self.name!r}; profiles: {', '.join(PROFILES)}")
        if self.name == "cluster":
            missing = [f for f in ("postgres_url", "broker_url") if not getattr(self, f)]
            if missing:
                raise ProfileError(f"the cluster profile needs {' and '.join(missing)} "
                                   "(iarbre instance --profile cluster --postgres URL --broker URL, "
                                   "or iarbre cluster up)")
        for name in ("max_concurrent_runs", "communes_per_run"):
            if getattr(self, name) < 1:
                raise ProfileError(f"{name} must be at least 1, not {getattr(self, name)}")

    @property
    def result_backend(self) -> str | None:
        return self.backend_url or self.broker_url

    def with_updates(self, **changes) -> "Profile":
        return replace(self, **changes)


def load_profile(dagster_home: str | Path) -> Profile:
    path = Path(dagster_home) / PROFILE_FILE
    if not path.exists():
        return Profile()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Profile(**data)
    except (ValueError, TypeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None


def save_profile(dagster_home: str | Path, profile: Profile) -> Path:
    from ..store import atomic_write_text

    path = Path(dagster_home) / PROFILE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(profile), indent=1))
    return path


def instance_yaml(dagster_home: Path, profile: Profile) -> str:
    """dagster.yaml for a home. Both profiles: no telemetry, one writer at a time on the DuckDB warehouse
    (the `warehouse` pool, limit 1, honoured by every executor), run monitoring so a killed run is marked
    failed, sensors in threads and a queue read every second (a drop's latency)."""
    from ..automation.refresh import REFRESH_TRIGGER

    common = (
        "telemetry:\n  enabled: false\n"
        "run_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  poll_interval_seconds: 10\n"
        "sensors:\n  use_threads: true\n  num_workers: 4\n"
        "auto_materialize:\n  use_threads: true\n  num_workers: 2\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "  config:\n    dequeue_interval_seconds: 1\n"
        "concurrency:\n  pools:\n    granularity: op\n    default_limit: 1\n"
        f"  runs:\n    max_concurrent_runs: {profile.max_concurrent_runs}\n"
    )
    if profile.name == "single":
        return (
            common
            + "event_log_storage:\n  module: iarbre_assets.instance_storage\n"
            + "  class: PooledSqliteEventLogStorage\n"
            + f"  config:\n    base_dir: {dagster_home / 'history'}\n"
        )
    # One refresh of a territory at a time (its runs rewrite the same territory outputs), and backfills
    # never take every slot from the partner-refresh runs.
    return (
        common
        + "    tag_concurrency_limits:\n"
        + f"      - key: iarbre/trigger\n        value: {REFRESH_TRIGGER}\n        limit: 1\n"
        + "      - key: dagster/backfill\n"
        + f"        limit: {max(1, profile.max_concurrent_runs - 1)}\n"
        + "storage:\n  postgres:\n"
        + f"    postgres_url: {json.dumps(profile.postgres_url)}\n"
    )


def write_instance_config(dagster_home: Path, profile: Profile | None = None) -> Profile:
    """Write dagster.yaml from the home's profile (or `profile`, which is then saved as the home's).
    Rewritten whenever it differs, so a copied home points only at itself."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    if profile is None:
        profile = load_profile(dagster_home)
    else:
        save_profile(dagster_home, profile)
    config = dagster_home / "dagster.yaml"
    text = instance_yaml(dagster_home, profile)
    if not config.exists() or config.read_text(encoding="utf-8") != text:
        config.write_text(text, encoding="utf-8")
    return profile


def executor_for(profile: Profile):
    """The Dagster executor of a profile. In-process on one machine: per-commune work is already spread over
    a worker pool, and a process per step would pay the imports at every step (docs/decisions.md)."""
    import dagster as dg

    if profile.name == "single":
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": profile.broker_url, "backend": profile.result_backend, "config_source": CELERY_SETTINGS},
        name="celery_executor",
    )


def backfill_policy_for(profile: Profile):
    """Per-commune assets on one machine: one run for every commune (the pool spreads them). On the cluster:
    a run per batch of communes, so batches run at once on different workers."""
    import dagster as dg

    if profile.name == "single":
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(profile.communes_per_run)


def worker_config_module(profile: Profile) -> str:
    """The `dagster_celery_config` module a Celery worker imports: the same broker, backend and settings as
    the executor."""
    settings = dict(CELERY_SETTINGS, broker_url=profile.broker_url, result_backend=profile.result_backend)
    lines = ['"""Written by `iarbre cluster up` from the home\'s profile; do not edit."""']
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"
