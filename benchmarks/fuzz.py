"""The connector fuzz test with a larger budget than the README's test command.

    .venv/bin/python benchmarks/fuzz.py [--seed N]

Runs tests/connectors/test_connectors_fuzz.py under the `fuzz-long` hypothesis profile (300 examples per
test and parameter, tests/connectors/conftest.py; random, not derandomised: each run explores new inputs,
`--seed` replays one) and prints the examples tried, the wall time and the outcome. The test suite runs the same tests with 40 fixed examples each.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to replay a run")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "--hypothesis-show-statistics",
               "--hypothesis-profile=fuzz-long",
               str(REPO / "tests" / "connectors" / "test_connectors_fuzz.py")]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    tried = [int(n) for n in re.findall(r"(\d+) passing, \d+ failing", done.stdout)]
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"fuzz: {len(tried)} tests x parameters, {sum(tried)} passing examples in all "
          f"(at least {min(tried, default=0)} each), {wall:.1f} s wall")
    print(f"pytest: {summary}")
    if done.returncode:
        print(done.stdout[-6000:])
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
