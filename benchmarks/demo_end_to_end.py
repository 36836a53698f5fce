"""The demo territory end to end, sources included, as `iarbre run` does it on a fresh data directory.

    .venv/bin/python benchmarks/demo_end_to_end.py [--runs 2]

Each run: a new home, the demo generated (not timed: `iarbre-demo`, about a second), every asset materialised (fetch through the local WFS /
data-fair server, normalisation and Great Expectations, footprints, coverages, score, classes, tiles,
exports, dbt marts). Prints the wall time and the peak RSS of the process tree of `iarbre run`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import TreeMemory  # noqa: E402

REPO = HERE.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    iarbre = Path(sys.executable).with_name("iarbre")
    subprocess.run([iarbre, "dbt-prepare"], cwd=REPO, check=True, capture_output=True)
    walls = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="iarbre-demo-bench-") as home:
            env = dict(os.environ)
            for key in ("IARBRE_HOME", "IARBRE_TERRITORY", "IARBRE_DATA_DIR", "DAGSTER_HOME"):
                env.pop(key, None)
            subprocess.run([iarbre.with_name("iarbre-demo"), "--home", home], cwd=REPO, env=env, check=True,
                           capture_output=True)
            start = time.perf_counter()
            process = subprocess.Popen([iarbre, "run", "--home", home, "--territory", "demo"], cwd=REPO, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            with TreeMemory(process.pid) as memory:
                output, _ = process.communicate()
            wall = time.perf_counter() - start
            if process.returncode != 0:
                print(output[-3000:])
                return 1
            walls.append(wall)
            print(f"run {i + 1}: `iarbre run` on the demo, fresh home: {wall:.1f} s wall, "
                  f"peak RSS (process tree) {memory.peak / 1e9:.2f} GB", flush=True)
    print(f"demo end to end, sources included: best {min(walls):.1f} s, mean {sum(walls) / len(walls):.1f} s "
          f"over {len(walls)} runs (target: under 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
