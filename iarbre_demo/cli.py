"""`iarbre-demo`: generate a synthetic territory, every source in its real wire format and schema.

    iarbre-demo                              the built-in demo, in <home>/data/demo
    iarbre-demo --if-missing                 the same, unless it is already there
    iarbre-demo --scale full --out DIR       ~59 communes (benchmarks)
    iarbre-demo --communes FILE --out DIR    demo layers on real commune boundaries
    iarbre-demo --mode files --out DIR       every source a local file (no local server)

Home: --home, else $IARBRE_HOME (read, never written), else ./.iarbre. Then run it with `iarbre run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from iarbre_assets.catalog import ConfigFileError, load_territory

from .generator import MARKER, generate_demo, is_generated

DEFAULT_SEED = 2154


def home_path(home: str | None) -> Path:
    """--home, else $IARBRE_HOME, else ./.iarbre (resolved)."""
    return Path(home or os.environ.get("IARBRE_HOME") or Path.cwd() / ".iarbre").resolve()


def default_out(home: Path) -> Path:
    """Where the built-in demo territory expects its data: its data directory under `home`."""
    return load_territory("demo").data_dir_path(home)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iarbre-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="data directory (default: $IARBRE_HOME or ./.iarbre)")
    parser.add_argument("--out", help="output directory (default: the demo territory's data directory)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="random seed (the output is byte-for-byte reproducible)")
    parser.add_argument("--scale", choices=["small", "full"], default="small",
                        help="small: 3 communes, ~5 km²; full: ~59 communes, ~534 km² (benchmarks)")
    parser.add_argument("--communes", help="generate the layers on these commune boundaries instead (any OGR format)")
    parser.add_argument("--mode", choices=["served", "files"], default="served",
                        help="served: WFS/data-fair layers served on 127.0.0.1 by the run; files: every source a "
                             "local file")
    parser.add_argument("--name", default=None, help="territory name written in the generated territory file")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the output directory already holds a generated territory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ConfigFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    home = home_path(args.home)
    out = Path(args.out).resolve() if args.out else default_out(home)
    if args.if_missing and is_generated(out):
        print(f"demo territory already in {out}: nothing generated (--if-missing)")
        territory_file = _marker(out).get("territory_file")
        if territory_file:
            print(f"territory file: {territory_file}")
        return 0
    communes = Path(args.communes).resolve() if args.communes else None
    if communes is not None and not communes.is_file():
        raise ValueError(f"--communes {args.communes}: no such file")
    started = time.perf_counter()
    territory_file = generate_demo(out, seed=args.seed, scale=args.scale, communes_file=communes,
                                   mode=args.mode, name=args.name)
    elapsed = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"demo territory written to {out} in {elapsed:.1f} s ({size / 1e6:.1f} MB)")
    print(f"territory file: {territory_file}")
    print(f"run it with: {_next_step(args, home, out, territory_file)}")
    return 0


def _next_step(args: argparse.Namespace, home: Path, out: Path, territory_file: Path) -> str:
    command = f"iarbre run --territory {territory_file}"
    if args.home:
        command += f" --home {home}"
    builtin = args.communes is None and args.mode == "served" and args.scale == "small" and args.name is None
    if builtin and out != default_out(home):  # the shipped territory file looks for its data elsewhere
        command += f" --data-dir {out}"
    return command


def _marker(out: Path) -> dict:
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
