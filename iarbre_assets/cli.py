"""`iarbre`: the command-line entry point.

    iarbre demo        generate the synthetic demo territory (or demo layers on a given communes file)
    iarbre run         materialise every asset of a territory in one run, and say where the outputs are
    iarbre ui          open the Dagster UI (dagster dev) on the same data directory
    iarbre catalogue   render the factor catalogue as Markdown (docs/catalogue.md)
    iarbre validate    check a catalogue and a territory file
    iarbre report      a commune's plantability summary, from the marts
    iarbre explain     why a point has its score: factors, weights, sources, versions and runs
    iarbre dbt-prepare build the dbt manifest the definitions load
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .catalog import ConfigFileError

REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------------
def configure_environment(args: argparse.Namespace) -> None:
    """Export the choices as environment variables, so Dagster code and subprocesses see the same."""
    if getattr(args, "home", None):
        os.environ["IARBRE_HOME"] = str(Path(args.home).resolve())
    os.environ.setdefault("IARBRE_HOME", str((Path.cwd() / ".iarbre").resolve()))
    if getattr(args, "territory", None):
        os.environ["IARBRE_TERRITORY"] = str(args.territory)
    if getattr(args, "data_dir", None):
        os.environ["IARBRE_DATA_DIR"] = str(Path(args.data_dir).resolve())
    home = Path(os.environ["IARBRE_HOME"])
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home / "dagster")))
    write_instance_config(dagster_home)


def write_instance_config(dagster_home: Path) -> None:
    """A Dagster instance for the platform: no telemetry, one writer at a time on the DuckDB warehouse,
    and one consolidated SQLite event log with a pooled engine (our runs record thousands of partition
    events; see iarbre_assets/instance_storage.py and docs/decisions.md)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "telemetry:\n  enabled: false\n"
            "concurrency:\n  pools:\n    granularity: op\n    default_limit: 1\n  runs:\n    max_concurrent_runs: 2\n"
            "event_log_storage:\n  module: iarbre_assets.instance_storage\n"
            "  class: PooledSqliteEventLogStorage\n"
            f"  config:\n    base_dir: {dagster_home / 'history'}\n",
            encoding="utf-8",
        )


def _shipped_demo() -> bool:
    return os.environ.get("IARBRE_TERRITORY", "demo") == "demo"


def ensure_demo_data(quiet: bool = False) -> Path | None:
    """Generate the built-in demo territory's files on first use (deterministic, a few seconds)."""
    if not _shipped_demo():
        return None
    from .catalog import load_territory
    from .demo.generator import generate_demo, is_generated
    from .paths import iarbre_home

    data_dir = load_territory("demo").data_dir_path(iarbre_home())
    if is_generated(data_dir):
        return data_dir
    import fcntl

    # `dagster dev` loads the definitions in several processes at once: one of them generates
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / f".{data_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_generated(data_dir):
            started = time.perf_counter()
            generate_demo(data_dir)
            if not quiet:
                print(f"generated the demo territory in {data_dir} ({time.perf_counter() - started:.1f} s)")
    return data_dir


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.generator import generate_demo

    configure_environment(args)
    if args.out:
        out = Path(args.out).resolve()
    else:
        from .catalog import load_territory
        from .paths import iarbre_home

        out = load_territory("demo").data_dir_path(iarbre_home())
    started = time.perf_counter()
    territory_file = generate_demo(
        out, seed=args.seed, scale=args.scale, communes_file=Path(args.communes) if args.communes else None,
        mode=args.mode, name=args.name,
    )
    elapsed = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"demo territory written to {out} in {elapsed:.1f} s ({size / 1e6:.1f} MB)")
    print(f"territory file: {territory_file}")
    if args.communes or args.mode != "served" or args.scale != "small":
        print(f"run it with: iarbre run --territory {territory_file}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    configure_environment(args)
    started = time.perf_counter()
    ensure_demo_data()
    from .runner import materialise_all, print_run_summary

    outcome = materialise_all(select=args.select)
    print_run_summary(outcome, elapsed=time.perf_counter() - started)
    return 0 if outcome.success else 1


def cmd_ui(args: argparse.Namespace) -> int:
    configure_environment(args)
    ensure_demo_data()
    import subprocess

    cmd = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
           "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (IARBRE_HOME={os.environ['IARBRE_HOME']}); Ctrl-C to stop")
    return subprocess.call(cmd, cwd=REPO_ROOT)


def cmd_catalogue(args: argparse.Namespace) -> int:
    from .catalog import load_catalog
    from .catalog.render import render_catalogue_markdown

    text = render_catalogue_markdown(load_catalog(args.catalog))
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run `iarbre catalogue`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .catalog import load_catalog, load_territory

    catalogue = load_catalog(args.catalog)
    print(f"catalogue OK: {len(catalogue.factors)} factors, {len(catalogue.sources)} sources")
    territory = load_territory(args.territory, catalogue)
    sources = territory.source_defs(catalogue)
    print(f"territory {territory.name!r} OK: {len(territory.selected_factors(catalogue))} factors, "
          f"{len(sources)} sources ({territory.file})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    configure_environment(args)
    from .provenance.report import commune_report, format_commune_report

    report = commune_report(args.commune)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_commune_report(report))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    configure_environment(args)
    from .provenance.explain import explain_point, format_explanation

    x, y = args.x, args.y
    if args.lonlat:
        from pyproj import Transformer

        x, y = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(args.x, args.y)
    explanation = explain_point(x, y)
    if args.json:
        print(json.dumps(explanation, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_explanation(explanation))
    return 0


def cmd_dbt_prepare(args: argparse.Namespace) -> int:
    configure_environment(args)
    from .warehouse.dbt import prepare_manifest

    path = prepare_manifest()
    print(f"dbt manifest ready: {path}")
    return 0


# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iarbre", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, territory=True):
        p.add_argument("--home", help="data directory (default: $IARBRE_HOME or ./.iarbre)")
        if territory:
            p.add_argument("--territory", help="shipped territory name or YAML file (default: $IARBRE_TERRITORY or demo)")
            p.add_argument("--data-dir", help="where the territory's partner files are (default: <home>/data/<name>)")

    p = sub.add_parser("demo", help="generate a synthetic demo territory", description=cmd_demo.__doc__ or
                       "Generate the synthetic demo territory: every source in its real wire format and schema.")
    common(p, territory=False)
    p.add_argument("--out", help="output directory (default: the demo territory's data directory)")
    p.add_argument("--seed", type=int, default=2154, help="random seed (the output is byte-for-byte reproducible)")
    p.add_argument("--scale", choices=["small", "full"], default="small",
                   help="small: 3 communes, ~5 km²; full: ~59 communes, ~534 km² (benchmarks)")
    p.add_argument("--communes", help="generate the layers on these commune boundaries instead (any OGR format)")
    p.add_argument("--mode", choices=["served", "files"], default="served",
                   help="served: WFS/data-fair layers served on 127.0.0.1 by the run; files: every source a local file")
    p.add_argument("--name", default=None, help="territory name written in the generated territory file")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="materialise every asset of a territory",
                       description="Materialise every asset (sources, constraints, score, marts, exports) in one "
                                   "Dagster run recorded in the instance, then print where the outputs are.")
    common(p)
    p.add_argument("--select", help="Dagster asset selection, e.g. 'group:sources' or "
                                    "'key:plantability_score or key:tiles' (default: everything)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ui", help="start the Dagster UI on the same data directory",
                       description="Run `dagster dev` with this data directory and territory.")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("catalogue", help="render the factor catalogue as Markdown",
                       description="Render docs/catalogue.md from the catalogue (or check it is up to date).")
    p.add_argument("--catalog", help="catalogue file (default: the shipped factors.yaml)")
    p.add_argument("--output", default=str(REPO_ROOT / "docs" / "catalogue.md"), help="output file, or - for stdout")
    p.add_argument("--check", action="store_true", help="fail if the output file is out of date")
    p.set_defaults(func=cmd_catalogue)

    p = sub.add_parser("validate", help="validate a catalogue and a territory file",
                       description="Load and validate the catalogue and a territory; errors name the file and field.")
    p.add_argument("--catalog", help="catalogue file (default: the shipped factors.yaml)")
    p.add_argument("--territory", default="demo", help="territory name or YAML file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("report", help="a commune's plantability summary from the marts",
                       description="Plain-text (or JSON) summary of one commune: class table and top constraints.")
    common(p, territory=False)
    p.add_argument("--commune", required=True, help="INSEE code of the commune")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("explain", help="why a point has its score",
                       description="Score, class, blocking factor, each factor's coverage, weight and contribution, "
                                   "and the source versions and runs behind them, for one point.")
    common(p, territory=False)
    p.add_argument("x", type=float, help="easting in EPSG:2154 (or longitude with --lonlat)")
    p.add_argument("y", type=float, help="northing in EPSG:2154 (or latitude with --lonlat)")
    p.add_argument("--lonlat", action="store_true", help="x y are WGS84 longitude latitude")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("dbt-prepare", help="build the dbt manifest (dbt parse)",
                       description="Run `dbt parse` so dbt_project/target/manifest.json exists for the definitions.")
    common(p, territory=False)
    p.set_defaults(func=cmd_dbt_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .platform import PlatformError
    from .provenance.explain import ExplainError
    from .provenance.report import ReportError

    try:
        return args.func(args)
    except (ConfigFileError, PlatformError, ExplainError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
