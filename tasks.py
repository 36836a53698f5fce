#!/usr/bin/env python3
"""Set-up and entry points for a fresh machine that has only Python 3.11 and pip.

    python3 tasks.py demo    # create .venv, install the pinned stack, generate the demo territory, run the platform on it
    python3 tasks.py test    # create .venv, install, prepare the dbt manifest, run the test suite

Only the standard library is used here, because nothing else is installed yet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".iarbre-install-stamp"


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def _install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"iarbre needs Python 3.11 (this is {sys.version.split()[0]}): run tasks.py with python3.11")
    if not (BIN / "python").exists():
        _run([sys.executable, "-m", "venv", VENV])
    fingerprint = _install_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    py = BIN / "python"
    _run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip==26.3"])
    # constraints.txt is the lock: every transitive package at the version that was tested.
    _run([py, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", "-e", ROOT])
    STAMP.write_text(fingerprint)


def prepare_dbt() -> None:
    """Build dbt_project/target/manifest.json, which @dbt_assets needs to load the definitions."""
    _run([BIN / "iarbre", "dbt-prepare"], cwd=ROOT)


def ensure_chromium() -> None:
    """The UI test drives headless Chromium; install Debian's package when we can."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False)
    if not shutil.which("chromium"):
        print("note: chromium is not installed; the UI test will say so", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"demo", "test"}:
        print(__doc__)
        return 2
    ensure_environment()
    prepare_dbt()
    if argv[1] == "demo":
        _run([BIN / "iarbre-demo", "--if-missing"], cwd=ROOT)  # the demo territory's files, once
        _run([BIN / "iarbre", "run", "--territory", "demo", *argv[2:]], cwd=ROOT)
    else:
        ensure_chromium()
        _run([BIN / "python", "-m", "pytest", "-q", *argv[2:]], cwd=ROOT)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
