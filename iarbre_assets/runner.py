"""Materialise the whole asset graph of a territory in one Dagster run, recorded in the instance.

Used by `iarbre run` and the benchmarks. The run is a normal Dagster run (DAGSTER_HOME), so the UI shows
it, its materialisations, checks and lineage afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    materialised: dict[str, int] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    result: object = None


def materialise_all(select=None, tags: dict | None = None, defs=None, platform=None, instance=None) -> RunOutcome:
    """Materialise every asset (or a selection) for all communes in one in-process run.

    Without arguments it uses the code location's Definitions and the DAGSTER_HOME instance; tests pass
    their own (built with `build_definitions`) and an instance.
    """
    from .compute.pool import prestart

    prestart()  # workers import the geo stack and GX while this process loads Dagster and the definitions
    import dagster as dg

    if defs is None:
        from .definitions import build_definitions

        defs, platform = build_definitions(return_platform=True)

    instance = instance or dg.DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    codes = platform.commune_codes
    run_tags = {
        "dagster/asset_partition_range_start": codes[0],
        "dagster/asset_partition_range_end": codes[-1],
        "iarbre/territory": platform.territory.name,
        **(tags or {}),
    }
    selection = None
    if isinstance(select, str):
        try:
            selection = dg.AssetSelection.from_string(select).resolve(defs.resolve_asset_graph())
        except dg.DagsterInvalidAssetSelectionError as exc:
            from .platform import PlatformError

            raise PlatformError(f"--select {select!r}: {exc} (e.g. 'group:score' or 'key:tiles')") from None
    elif select:
        selection = [dg.AssetKey.from_coercible(k) for k in select]
    # Dagster's step-by-step DEBUG lines go to the run's event log (see the UI); the console gets warnings.
    run_config = {"loggers": {"console": {"config": {"log_level": os.environ.get("IARBRE_LOG_LEVEL", "WARNING")}}}}
    result = job.execute_in_process(instance=instance, tags=run_tags, raise_on_error=False, run_config=run_config,
                                    asset_selection=list(selection) if selection else None)
    outcome = RunOutcome(success=result.success, run_id=result.run_id, result=result)
    for event in result.get_asset_materialization_events():
        top = event.asset_key.path[0]
        outcome.materialised[top] = outcome.materialised.get(top, 0) + 1
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            outcome.failed_steps.append(event.step_key)
            info = event.step_failure_data.error
            while info is not None and info.cause is not None:  # the user's exception, not Dagster's wrapper
                info = info.cause
            message = info.message.strip() if info else ""
            user = event.step_failure_data.user_failure_data
            if user and user.description:
                message = user.description
            outcome.failures.append(f"{event.step_key}: {message.splitlines()[0] if message else 'failed'}")
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        key = evaluation.asset_key.path[0]
        passed, total = outcome.checks.get(key, (0, 0))
        outcome.checks[key] = (passed + int(evaluation.passed), total + 1)
        if not evaluation.passed:
            severity = "blocking" if evaluation.severity.value == "ERROR" else "warning"
            outcome.failed_checks.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} ({severity})")
            if severity == "blocking":
                outcome.success = False
    return outcome


def print_run_summary(outcome: RunOutcome, elapsed: float) -> None:
    from .paths import Layout

    layout = Layout.from_env()
    status = "succeeded" if outcome.success else "FAILED"
    print(f"\nrun {outcome.run_id} {status} in {elapsed:.1f} s")
    print("materialisations: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.materialised.items())))
    checks = ", ".join(f"{k} {p}/{t}" for k, (p, t) in sorted(outcome.checks.items()))
    print(f"checks passed: {checks}")
    for failure in outcome.failures:
        print(f"  failed: {failure}")
    for check in outcome.failed_checks:
        print(f"  check failed: {check}")
    outputs = [
        ("score (COG)", layout.score / "plantability_score.tif"),
        ("classes (COG)", layout.score / "plantability_class.tif"),
        ("class polygons (GeoPackage)", layout.exports / "plantability_classes.gpkg"),
        ("tiles (GeoParquet)", layout.exports / "tiles.parquet"),
        ("preview (PNG)", layout.exports / "plantability_class_preview.png"),
        ("warehouse (DuckDB: tiles, marts)", layout.warehouse),
        ("raw store", layout.raw),
    ]
    print("\noutputs:")
    for label, path in outputs:
        mark = "" if Path(path).exists() else "  (missing)"
        print(f"  {label:34s} {path}{mark}")
    home = os.environ.get("IARBRE_HOME", "")
    print("\nDagster UI (lineage, checks, versions of this run):")
    print(f"  IARBRE_HOME={home} .venv/bin/iarbre ui      then open http://127.0.0.1:3000")
    print("Commune summary:  .venv/bin/iarbre report --commune <INSEE code>")
