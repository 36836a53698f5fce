"""The dbt project as Dagster sees it: location, manifest preparation, and the dbt CLI resource.

`prepare_manifest()` runs `dbt parse` so `dbt_project/target/manifest.json` exists (the definitions need
it to load). `iarbre dbt-prepare` calls it, and so do the README commands and CI; loading the definitions
never does. It is skipped when the manifest was produced from exactly the current project files
(fingerprint of every file under dbt_project/ except target/ and logs/).

Each home's warehouse reaches dbt as a var (`--vars '{"warehouse_path": ...}'`, read by profiles.yml):
no environment variable is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from functools import cached_property
from importlib.metadata import version as package_version
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version as packaging_version

DBT_PROJECT_DIR = (Path(__file__).resolve().parents[2] / "dbt_project").resolve()
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

_FINGERPRINT_NAME = ".iarbre_manifest_fingerprint"
_IGNORED_DIRS = {"target", "logs", "dbt_packages", "__pycache__"}


class DbtPrepareError(RuntimeError):
    """`dbt parse` failed; the message carries dbt's output."""


def dbt_executable() -> str:
    """The dbt next to this interpreter (works without an activated venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dbt")
    if found:
        return found
    raise RuntimeError(
        f"no dbt executable next to {sys.executable} nor on PATH: install the project's pinned "
        "dbt-core and dbt-duckdb in this environment (pip install -e . -c constraints.txt)"
    )


def dbt_env() -> dict[str, str]:
    """Environment for a dbt subprocess run outside DbtCliResource (prepare_manifest): a copy, never os.environ."""
    env = dict(os.environ)
    env.update(
        DBT_PROFILES_DIR=str(DBT_PROJECT_DIR),
        DBT_PROJECT_DIR=str(DBT_PROJECT_DIR),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_TARGET_PATH=str(DBT_PROJECT_DIR / dbt_project.target_path),
        DBT_LOG_PATH=str(DBT_PROJECT_DIR / dbt_project.target_path),  # no stray dbt_project/logs
    )
    env.pop("DBT_LOG_FORMAT", None)
    return env


def dbt_vars(warehouse: Path, memory_limit: str | None = None) -> str:
    """The `--vars` of a dbt invocation on one home's warehouse (and DuckDB's buffer-pool cap in dbt)."""
    import json

    from .duck import DEFAULT_MEMORY_LIMIT

    return json.dumps({"warehouse_path": str(Path(warehouse).resolve()),
                       "duckdb_memory_limit": memory_limit or DEFAULT_MEMORY_LIMIT})


def project_fingerprint() -> str:
    """SHA-256 over the project's files (paths and bytes) and the dbt/dagster-dbt versions."""
    digest = hashlib.sha256()
    digest.update(f"dbt-core {package_version('dbt-core')} dbt-duckdb {package_version('dbt-duckdb')} "
                  f"dagster-dbt {package_version('dagster-dbt')}\n".encode())
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        rel = path.relative_to(DBT_PROJECT_DIR)
        if not path.is_file() or _IGNORED_DIRS.intersection(rel.parts[:-1]) or rel.name.startswith("."):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def manifest_is_current() -> bool:
    """Whether dbt_project/target/manifest.json was parsed from exactly the project files there now."""
    stamp = DBT_PROJECT_DIR / dbt_project.target_path / _FINGERPRINT_NAME
    return dbt_project.manifest_path.exists() and stamp.exists() and stamp.read_text() == project_fingerprint()


def prepare_manifest(force: bool = False) -> Path:
    """Run `dbt parse` if the manifest is missing or stale; return the manifest path.

    Idempotent and safe to call from several processes at once (a file lock serialises parses).
    Raises DbtPrepareError with dbt's output when parsing fails.
    """
    target = DBT_PROJECT_DIR / dbt_project.target_path
    manifest = dbt_project.manifest_path
    stamp = target / _FINGERPRINT_NAME
    target.mkdir(parents=True, exist_ok=True)
    fingerprint = project_fingerprint()
    if not force and manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return manifest
    with open(target / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not force and manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
                return manifest  # another process parsed while we waited
            stamp.unlink(missing_ok=True)
            result = subprocess.run(
                [dbt_executable(), "parse", "--quiet", "--no-use-colors"],
                cwd=DBT_PROJECT_DIR,
                env=dbt_env(),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0 or not manifest.exists():
                output = (result.stdout + result.stderr).strip()
                raise DbtPrepareError(
                    f"`dbt parse` failed in {DBT_PROJECT_DIR} (exit {result.returncode}):\n{output[-4000:]}"
                )
            stamp.write_text(fingerprint)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return manifest


KEEP_RUN_TARGETS = 20


def run_target_path(dbt_dir: Path, run_id: str) -> Path:
    """A fresh dbt target folder for one invocation, under <home>/dbt/runs (not the repository),
    keeping the newest KEEP_RUN_TARGETS: run_results.json there says which tests ran and how.

    The folder is seeded with the newest partial_parse.msgpack of this home's earlier runs. dbt keys its
    partial-parse state on the profile, which names the warehouse path, so the project's own state
    (parsed for whatever IARBRE_HOME `dbt-prepare` saw) would force a full re-parse (~5 s) on every run
    for any other home. dbt re-validates the seeded state (versions, profile, file checksums).
    """
    import uuid

    runs = Path(dbt_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    states = sorted(runs.glob("*/partial_parse.msgpack"), key=lambda p: p.stat().st_mtime)
    target = runs / f"{run_id[:8]}-{uuid.uuid4().hex[:6]}"
    target.mkdir()
    # The project's own state (from `iarbre dbt-prepare`) is valid when it was parsed for this home,
    # which is the case for the README's commands; dbt falls back to a full parse otherwise.
    prepared = DBT_PROJECT_DIR / dbt_project.target_path / "partial_parse.msgpack"
    seed = states[-1] if states else (prepared if prepared.exists() else None)
    if seed is not None:
        shutil.copy2(seed, target / "partial_parse.msgpack")
    for stale in old[: max(0, len(old) - (KEEP_RUN_TARGETS - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


class IarbreDbtCliResource(DbtCliResource):
    """DbtCliResource without two per-run costs we do not use (both override private hooks of
    dagster-dbt 0.29; if they are renamed upstream the overrides become inert, not wrong):

    - `dbt --version` (run once per resource instance to tell dbt-core from Fusion): ~4 s, and dbt then
      asks pypi.org for the latest release. Our dbt is this environment's pinned dbt-core.
    - an in-process dbt adapter (~2-6 s of imports per run). It only serves `fetch_row_counts()` /
      `fetch_column_metadata()`, which we cannot use: with DuckDB they leave this process holding the
      warehouse's single-writer lock after the run.
    """

    @cached_property
    def _cli_version(self) -> packaging_version.Version:
        return packaging_version.parse(package_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - see class docstring
        return None


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource (resource key `dbt`), using the venv's dbt executable explicitly."""
    return IarbreDbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )
