"""The single-worker ingest, many times in a row, each in a fresh `iarbre` process (issue 13).

    .venv/bin/python benchmarks/single_worker_ingest.py [--runs 20] [--work /tmp/iarbre-single-worker]

With one worker (`IARBRE_WORKERS=1`, the default on a 1-CPU host) everything runs in the run's process.
An earlier background import of Great Expectations raced with the run's own SQLAlchemy imports and failed
`ingest_sources` about once in 20 runs. Each run here starts from a home holding only the demo's partner
files, so every source is parsed, normalised and checked by its GX suite (the imports happen for real).
Prints each run's status and wall time, and the count of failures; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", default="/tmp/iarbre-single-worker")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    base = work / "base"
    subprocess.run([str(BIN / "iarbre-demo"), "--home", str(base)], check=True, capture_output=True)
    env = {**os.environ, "IARBRE_WORKERS": "1"}
    failures = 0
    for index in range(1, args.runs + 1):
        home = work / f"run-{index:02d}"
        shutil.copytree(base, home)
        start = time.monotonic()
        done = subprocess.run([str(BIN / "iarbre"), "run", "--territory", "demo", "--home", str(home),
                               "--select", "group:sources"], capture_output=True, text=True, env=env)
        wall = time.monotonic() - start
        ok = done.returncode == 0 and "succeeded" in done.stdout
        failures += not ok
        print(f"run {index:2d}/{args.runs}: {'ok' if ok else 'FAILED'} in {wall:.1f} s", flush=True)
        if not ok:
            print((done.stdout + done.stderr)[-4000:])
        shutil.rmtree(home, ignore_errors=True)
    print(f"single-worker ingest: {args.runs - failures}/{args.runs} runs succeeded in a row"
          if not failures else f"single-worker ingest: {failures} of {args.runs} runs FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
