"""`iarbre explain` on the demo: the command's wall time, and the in-process call after the first.

    .venv/bin/python benchmarks/explain.py [--home /tmp/iarbre-explain-bench] [--points 40] [--calls 5]

Uses the home given (runs `iarbre-demo` and `iarbre run` there first when it has no score yet, not timed),
then:
1. `iarbre explain X Y --home HOME` as a person types it, `--calls` times at points of different communes:
   wall time of the whole process (interpreter start, imports, reading the record and the rasters).
2. `explain_point(home, x, y)` in one process at `--points` points spread over every commune, each point
   asked twice: the first call of the process, then the median and maximum of the others.
Targets (issue 12): the command ≤ 1 s wall; in process ≤ 20 ms after the first call.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bin_(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def ensure_demo_home(home: Path) -> None:
    from iarbre_assets.store import Store

    if Store(home).commune_windows.exists():
        return
    print(f"preparing the demo in {home} (not timed)", flush=True)
    subprocess.run([bin_("iarbre-demo"), "--home", str(home), "--if-missing"], cwd=REPO, check=True)
    subprocess.run([bin_("iarbre"), "run", "--home", str(home), "--territory", "demo"], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)


def sample_points(home: Path, count: int) -> list[tuple[float, float]]:
    """Points inside scored cells of every commune, off the cell centres (as a person clicks)."""
    import pandas as pd

    from iarbre_assets.store import Store

    store, rng = Store(home), random.Random(12)
    codes = sorted(json.loads(store.commune_windows.read_text())["communes"])
    points = []
    for i in range(count):
        tiles = pd.read_parquet(store.tiles(codes[i % len(codes)]), columns=["x", "y"])
        row = tiles.iloc[rng.randrange(len(tiles))]
        points.append((float(row.x) + rng.uniform(-2.4, 2.4), float(row.y) + rng.uniform(-2.4, 2.4)))
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="iarbre-explain-bench-"))
    ensure_demo_home(home)
    points = sample_points(home, max(args.points, args.calls))

    walls = []
    for x, y in points[: args.calls]:
        started = time.perf_counter()
        result = subprocess.run([bin_("iarbre"), "explain", f"{x:.2f}", f"{y:.2f}", "--home", str(home)], cwd=REPO,
                                capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
            raise SystemExit("iarbre explain failed")
    print(f"`iarbre explain X Y --home HOME` (whole process), {len(walls)} calls: median {statistics.median(walls):.2f} s, "
          f"max {max(walls):.2f} s (target ≤ 1 s)", flush=True)

    from iarbre_assets.provenance.explain import explain_point

    started = time.perf_counter()
    explain_point(home, *points[0])
    first = time.perf_counter() - started
    later = []
    for x, y in points[1:] + points:  # every point twice: a first touch of its commune, then a repeat
        started = time.perf_counter()
        explanation = explain_point(home, x, y)
        later.append(time.perf_counter() - started)
        assert explanation["score"] is not None
    later.sort()
    print(f"explain_point in process: first call {first * 1000:.0f} ms; the {len(later)} later calls: "
          f"median {statistics.median(later) * 1000:.1f} ms, p95 {later[int(0.95 * (len(later) - 1))] * 1000:.1f} ms, "
          f"max {later[-1] * 1000:.1f} ms (target ≤ 20 ms)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
