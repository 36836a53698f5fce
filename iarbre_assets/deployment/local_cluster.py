"""A local cluster for one home: Postgres, Redis and Celery worker processes on 127.0.0.1, no containers.

`iarbre cluster up` starts what is missing and writes the home's cluster profile; `iarbre cluster down` stops
it; `iarbre cluster status` reports health (database, queue, workers). Everything lives in
<home>/cluster/ (pid files, logs, the Redis directory, the workers' config module), except Postgres's data
directory when running as root: Postgres refuses to run as root, so it runs as the `postgres` system user
in a directory that user owns (recorded in the state file).

In production the same profile points at managed servers (`iarbre instance --profile cluster --postgres
URL --broker URL`) and workers are started on each host with `iarbre cluster worker`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .profiles import Profile, worker_config_module, write_instance_config

HOST = "127.0.0.1"
DATABASE = "iarbre"
WORKER_APP = "dagster_celery.app"
QUEUE = "dagster"


class ClusterError(RuntimeError):
    pass


@dataclass
class ClusterPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def config_dir(self) -> Path:
        return self.root / "worker-config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def worker_pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"


def cluster_paths(dagster_home: Path) -> ClusterPaths:
    return ClusterPaths(Path(dagster_home).parent / "cluster")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _read_state(paths: ClusterPaths) -> dict:
    return json.loads(paths.state.read_text(encoding="utf-8")) if paths.state.exists() else {}


def _write_state(paths: ClusterPaths, state: dict) -> None:
    from ..store import atomic_write_text

    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.state, json.dumps(state, indent=1))


# ------------------------------------------------------------------------------------------------
# Postgres
# ------------------------------------------------------------------------------------------------
def postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise ClusterError(f"Postgres's {name} is not installed (Debian: apt-get install postgresql)")
    return str(candidates[0])


def _as_postgres_user() -> list[str]:
    """Postgres refuses root: run its commands as the `postgres` system user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if not runuser:
        raise ClusterError("running as root, and runuser is missing to start Postgres as the postgres user")
    return [runuser, "-u", "postgres", "--"]


def _postgres_data_dir(paths: ClusterPaths) -> Path:
    if os.geteuid() != 0:
        return paths.root / "postgres"
    import hashlib

    digest = hashlib.sha256(str(paths.root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"iarbre-postgres-{digest}"


def _postgres_ready(port: int) -> bool:
    result = subprocess.run([postgres_bin("pg_isready"), "-h", HOST, "-p", str(port), "-q"], check=False)
    return result.returncode == 0


def start_postgres(paths: ClusterPaths, port: int) -> str:
    data = _postgres_data_dir(paths)
    prefix = _as_postgres_user()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if prefix:
            shutil.chown(data, "postgres", "postgres")
        # trust on 127.0.0.1 only: a development cluster bound to loopback; production uses its own server
        subprocess.run([*prefix, postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-instructions"], check=True, stdout=subprocess.DEVNULL)
    log = data / "server.log"
    if not _postgres_ready(port):
        subprocess.run([*prefix, postgres_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-h {HOST} -p {port} -k {data} -c max_connections=200 -c fsync=off", "start"],
                       check=True, stdout=subprocess.DEVNULL)
    exists = subprocess.run([postgres_bin("psql"), "-h", HOST, "-p", str(port), "-U", "postgres", "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname='{DATABASE}'"],
                            check=True, capture_output=True, text=True).stdout.strip()
    if exists != "1":
        subprocess.run([postgres_bin("createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", DATABASE],
                       check=True)
    return str(data)


def stop_postgres(data_dir: str) -> None:
    if data_dir and (Path(data_dir) / "postmaster.pid").exists():
        subprocess.run([*_as_postgres_user(), postgres_bin("pg_ctl"), "-D", data_dir, "-m", "fast", "-w", "stop"],
                       check=False, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------------
def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def start_redis(paths: ClusterPaths, port: int) -> str:
    url = f"redis://{HOST}:{port}/0"
    if _redis_ping(url):
        return url
    server = shutil.which("redis-server")
    if not server:
        raise ClusterError("redis-server is not installed (Debian: apt-get install redis-server)")
    paths.redis_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([server, "--bind", HOST, "--port", str(port), "--daemonize", "yes", "--dir", str(paths.redis_dir),
                    "--pidfile", str(paths.redis_dir / "redis.pid"), "--logfile", str(paths.redis_dir / "redis.log"),
                    "--save", "", "--appendonly", "no", "--protected-mode", "yes"], check=True)
    deadline = time.monotonic() + 30
    while not _redis_ping(url):
        if time.monotonic() > deadline:
            raise ClusterError(f"redis-server did not answer on {url}; see {paths.redis_dir / 'redis.log'}")
        time.sleep(0.2)
    return url


def stop_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).shutdown(nosave=True)
    except redis.RedisError:
        pass  # already gone (shutdown also closes the connection, which redis-py reports as an error)


# ------------------------------------------------------------------------------------------------
# Celery workers
# ------------------------------------------------------------------------------------------------
def write_worker_config(paths: ClusterPaths, profile: Profile) -> Path:
    from ..store import atomic_write_text

    paths.config_dir.mkdir(parents=True, exist_ok=True)
    module = paths.config_dir / "dagster_celery_config.py"
    atomic_write_text(module, worker_config_module(profile))
    return paths.config_dir


def worker_command(name: str, paths: ClusterPaths) -> list[str]:
    # solo pool: the step runs in the worker's main process, which may then start the per-commune pool
    # (a prefork child is daemonic and may not); one step at a time per worker.
    celery = str(Path(sys.executable).with_name("celery"))
    return [celery, "-A", WORKER_APP, "worker", "-P", "solo", "-c", "1", "-Q", QUEUE, "-n", f"{name}@%h",
            "--prefetch-multiplier=1", "-O", "fair", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            "--logfile", str(paths.logs / f"{name}.log")]


def start_worker(name: str, paths: ClusterPaths, profile: Profile, env: dict[str, str], cores: int) -> int:
    """Start one Celery worker in the background and return its pid."""
    config_dir = write_worker_config(paths, profile)
    paths.logs.mkdir(parents=True, exist_ok=True)
    worker_env = dict(env, IARBRE_WORKERS=str(cores),
                      PYTHONPATH=os.pathsep.join(p for p in (str(config_dir), env.get("PYTHONPATH", "")) if p))
    with open(paths.logs / f"{name}.out", "ab") as out:
        process = subprocess.Popen(worker_command(name, paths), env=worker_env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    paths.worker_pid(name).write_text(str(process.pid), encoding="ascii")
    return process.pid


DAEMON = "daemon"


def start_daemon(paths: ClusterPaths, env: dict[str, str], workspace: Path) -> int:
    """The Dagster daemon of the cluster (queue, backfills, sensors, automation, run monitoring): one per
    instance. Its runs execute their steps on the Celery workers."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)]
    with open(paths.logs / f"{DAEMON}.log", "ab") as out:
        process = subprocess.Popen(command, env=env, cwd=workspace.parent, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    paths.worker_pid(DAEMON).write_text(str(process.pid), encoding="ascii")
    return process.pid


def wait_for_daemon(dagster_home: Path, timeout_s: float = 180) -> None:
    """Wait for the daemon's backfill and queue loops to beat (the code location loaded)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beats = instance.get_daemon_heartbeats()
        if {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(beats):
            return
        time.sleep(0.5)
    raise ClusterError(f"the Dagster daemon did not start within {timeout_s:.0f} s; see "
                       f"{cluster_paths(dagster_home).logs / (DAEMON + '.log')}")


def daemon_pid(paths: ClusterPaths) -> int | None:
    return _running_pids(paths).get(DAEMON)


def worker_pids(paths: ClusterPaths) -> dict[str, int]:
    return {name: pid for name, pid in _running_pids(paths).items() if name != DAEMON}


def _running_pids(paths: ClusterPaths) -> dict[str, int]:
    pids = {}
    for pid_file in sorted(paths.root.glob("*.pid")):
        try:
            pid = int(pid_file.read_text(encoding="ascii").strip())
        except ValueError:
            continue
        if _alive(pid):
            pids[pid_file.stem] = pid
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not a worker
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def stop_worker(paths: ClusterPaths, name: str, timeout_s: float = 60) -> None:
    pid_file = paths.worker_pid(name)
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)  # warm shutdown: the step in hand finishes first
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def celery_app(profile: Profile):
    """A Celery client on the profile's broker, with the workers' settings (for control and inspection)."""
    from dagster_celery.make_app import make_app

    from .profiles import CELERY_SETTINGS

    app = make_app({"broker": profile.broker_url, "backend": profile.result_backend})
    app.conf.update(CELERY_SETTINGS)
    return app


def wait_for_workers(profile: Profile, names: list[str], timeout_s: float = 120) -> list[str]:
    """Wait until every named worker answers a ping through the broker; the names that answered."""
    app = celery_app(profile)
    deadline = time.monotonic() + timeout_s
    answered: set[str] = set()
    while time.monotonic() < deadline:
        replies = app.control.inspect(timeout=1.0).ping() or {}
        answered = {node.partition("@")[0] for node in replies}
        if set(names) <= answered:
            break
        time.sleep(0.5)
    return sorted(answered)


# ------------------------------------------------------------------------------------------------
# the cluster as a whole
# ------------------------------------------------------------------------------------------------
def up(dagster_home: Path, env: dict[str, str], workspace: Path, workers: int = 2, cores: int = 1,
       postgres_port: int | None = None, redis_port: int | None = None, max_concurrent_runs: int = 2,
       communes_per_run: int = 8) -> tuple[Profile, dict]:
    """Start Postgres, Redis, `workers` Celery workers (`cores` pool processes each) and the Dagster daemon
    for this home, and make the cluster the home's profile (written before the daemon reads it). Servers
    already running for the home are kept."""
    paths = cluster_paths(dagster_home)
    state = _read_state(paths)
    postgres_port = postgres_port or state.get("postgres_port") or free_port()
    redis_port = redis_port or state.get("redis_port") or free_port()
    data_dir = start_postgres(paths, postgres_port)
    broker = start_redis(paths, redis_port)
    state.update(postgres_port=postgres_port, redis_port=redis_port, postgres_data=data_dir, broker_url=broker)
    _write_state(paths, state)
    profile = Profile(name="cluster", postgres_url=f"postgresql+psycopg2://postgres@{HOST}:{postgres_port}/{DATABASE}",
                      broker_url=broker, backend_url=f"redis://{HOST}:{redis_port}/1",
                      max_concurrent_runs=max_concurrent_runs, communes_per_run=communes_per_run)
    write_instance_config(dagster_home, profile)
    running = worker_pids(paths)
    names = [f"worker{i}" for i in range(1, workers + 1)]
    for name in names:
        if name not in running:
            start_worker(name, paths, profile, env, cores)
    answered = wait_for_workers(profile, names)
    missing = sorted(set(names) - set(answered))
    if missing:
        raise ClusterError(f"worker(s) {', '.join(missing)} did not answer; see {paths.logs}")
    if daemon_pid(paths) is None:
        start_daemon(paths, env, workspace)
    wait_for_daemon(dagster_home)
    return profile, state


def down(dagster_home: Path, purge: bool = False) -> None:
    """Stop the daemon, the workers, Redis and Postgres. `purge` also deletes the cluster's database (every
    run and event) and its state: the next `up` starts from an empty instance."""
    paths = cluster_paths(dagster_home)
    for name in _running_pids(paths):  # the daemon first: it would launch runs with no worker to take them
        stop_worker(paths, name)
    state = _read_state(paths)
    if state.get("broker_url"):
        stop_redis(state["broker_url"])
    stop_postgres(state.get("postgres_data", ""))
    if purge:
        if state.get("postgres_data"):
            shutil.rmtree(state["postgres_data"], ignore_errors=True)
        shutil.rmtree(paths.root, ignore_errors=True)


def status(dagster_home: Path, profile: Profile) -> dict:
    """Health of the cluster this profile names: database, queue and workers."""
    import redis
    import sqlalchemy

    report: dict = {"profile": profile.name}
    try:
        engine = sqlalchemy.create_engine(profile.postgres_url, pool_pre_ping=True)
        with engine.connect() as conn:
            size = conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar()
        report["database"] = {"ok": True, "size_bytes": size, "event_rows": _count(engine, "event_logs"),
                              "runs": _count(engine, "runs")}
        engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        report["database"] = {"ok": False, "error": str(exc).splitlines()[0]}
    try:
        client = redis.Redis.from_url(profile.broker_url, socket_timeout=2)
        report["queue"] = {"ok": bool(client.ping()), "waiting_tasks": client.llen(QUEUE),
                           "unacknowledged_tasks": client.hlen("unacked")}
    except redis.RedisError as exc:
        report["queue"] = {"ok": False, "error": str(exc)}
    if report["queue"].get("ok"):
        app = celery_app(profile)
        inspect = app.control.inspect(timeout=2.0)
        pings = inspect.ping() or {}
        active = inspect.active() or {}
        report["workers"] = {node: {"ok": True, "active_tasks": len(active.get(node, []))} for node in sorted(pings)}
    else:
        report["workers"] = {}
    report["daemon"] = _daemon_health(dagster_home)
    report["local_processes"] = _running_pids(cluster_paths(dagster_home))
    return report


def _daemon_health(dagster_home: Path, stale_s: float = 120) -> dict:
    import dagster as dg

    try:
        beats = dg.DagsterInstance.from_config(str(dagster_home)).get_daemon_heartbeats()
    except Exception as exc:  # noqa: BLE001 - the database may be down; that is reported above
        return {"ok": False, "error": str(exc).splitlines()[0]}
    fresh = sorted(kind for kind, beat in beats.items() if time.time() - beat.timestamp < stale_s)
    return {"ok": bool(fresh), "loops": fresh}


def _count(engine, table: str):
    import sqlalchemy

    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar()
    except sqlalchemy.exc.SQLAlchemyError:
        return None  # no run yet: Dagster creates its tables on first use
