"""Time and size of the full-scale synthetic metropole generation (`iarbre demo --scale full`).

    .venv/bin/python benchmarks/generate_full_scale.py [--out /tmp/iarbre-full-gen]

Prints the wall time, the peak RSS of the process tree, the size on disk and the per-layer counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import measured, report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/iarbre-full-gen")
    parser.add_argument("--seed", type=int, default=2154)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    from iarbre_demo.generator import MARKER, generate_demo

    results: dict = {}
    with measured("generate the full-scale synthetic metropole", results):
        generate_demo(out, seed=args.seed, scale="full")
    files = [p for p in out.rglob("*") if p.is_file()]
    results["generate the full-scale synthetic metropole"]["size"] = f"{sum(p.stat().st_size for p in files) / 1e6:.0f} MB"
    results["generate the full-scale synthetic metropole"]["files"] = len(files)
    report(results)
    marker = json.loads((out / MARKER).read_text())
    print(f"{marker['communes']} communes; features per layer:")
    for slug, count in marker["layers"].items():
        print(f"  {slug:24s} {count:>9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
