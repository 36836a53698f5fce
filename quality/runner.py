"""Run a source's quality suite with Great Expectations 1.x and report each outcome with its severity.

    spec = SuiteSpec(source="ore_gaz", family="networks", ...)   # quality.spec; the product builds it
    result = run_quality_suite(gdf, spec, previous_row_count=1234, normalise_summary=None)
    result.passed              # no blocking failure
    result.to_markdown()       # table for the asset check metadata
    result.failure_message("espaces_publics")

GX is imported lazily and its ephemeral context created once per process (import + context cost a few
seconds); each call registers a uniquely named asset and suite and removes them afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import geopandas as gpd
import pandas as pd

from .checks import Check, Suite
from .frame import derive_frame, kind_matches
from .spec import NormaliseSummary, SuiteSpec
from .suites import build_suite

RESULT_FORMAT = "BASIC"  # counts + up to 20 unexpected values; SUMMARY costs ~40 % more per expectation
_MAX_OBSERVED = 500


@dataclass(frozen=True)
class ExpectationOutcome:
    name: str
    column: str | None
    blocking: bool
    success: bool
    observed: str
    details: str
    expectation: str = ""  # GX expectation type, or "python" for a check GX cannot express

    @property
    def severity(self) -> str:
        return "blocking" if self.blocking else "warning"

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        return f"{self.name}{where}: observed {self.observed} — expected {self.details}"


@dataclass
class SuiteResult:
    suite_name: str
    source: str
    passed: bool
    blocking_failures: list[str]
    warnings: list[str]
    outcomes: list[ExpectationOutcome]
    statistics: dict[str, float]
    gx_version: str
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        status = "passed" if self.passed else "FAILED"
        stats = self.statistics
        lines = [
            f"**Quality suite `{self.suite_name}` on `{self.source}`: {status}** — "
            f"{len(self.blocking_failures)} blocking failure(s), {len(self.warnings)} warning(s); "
            f"{stats['successful']}/{stats['evaluated']} expectations met ({stats['success_percent']:.1f} %), "
            f"Great Expectations {self.gx_version}",
            "",
            "| expectation | column | severity | result | observed |",
            "|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            result = "pass" if o.success else ("**FAIL**" if o.blocking else "warn")
            cells = [_cell(o.name), _cell(o.column or "—"), o.severity, result, _cell(o.observed)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def failure_message(self, source_slug: str | None = None) -> str:
        slug = source_slug or self.source
        if self.passed:
            text = (f"Source {slug!r} passed its {self.suite_name!r} quality suite "
                    f"({self.statistics['evaluated']} expectations).")
        else:
            text = (f"Source {slug!r} failed its {self.suite_name!r} quality suite: "
                    f"{len(self.blocking_failures)} blocking check(s) failed, so factors must not use this "
                    f"version: " + "; ".join(self.blocking_failures) + ".")
        if self.warnings:
            text += f" {len(self.warnings)} warning(s): " + "; ".join(self.warnings) + "."
        return text


def run_quality_suite(
    frame: gpd.GeoDataFrame,
    spec: SuiteSpec,
    *,
    previous_row_count: int | None,
    normalise_summary: NormaliseSummary | Mapping[str, Any] | None,
) -> SuiteResult:
    """Validate a (normalised) source layer against the suite of its family.

    `frame`: the layer; `spec`: what the suite is derived from (columns, filters, buffers, territory bounds,
    thresholds); `previous_row_count`: rows of the last accepted version (None on first ingestion);
    `normalise_summary`: what normalisation did (a `NormaliseSummary`, or a mapping with its fields such
    as a normalisation report's dict), or None; when given, adds checks on what it dropped or could not type.
    """
    started = time.perf_counter()
    suite = build_suite(spec, previous_row_count=previous_row_count,
                        normalise_summary=NormaliseSummary.coerce(normalise_summary))
    scalars = derive_frame(frame, spec)  # what GX validates: declared columns + derived geometry columns
    outcomes: dict[int, ExpectationOutcome] = {}
    to_gx: list[tuple[int, Check]] = []
    for index, check in enumerate(suite.checks):
        problem = _unmet_needs(check, scalars, spec)
        if problem:
            outcomes[index] = _outcome(check, False, f"not evaluated: {problem}", "not evaluated")
        elif check.evaluate is not None:
            try:
                success, observed = check.evaluate(scalars, frame)
            except Exception as exc:  # a crashing check is a failed check, with its reason
                success, observed = False, f"check raised {type(exc).__name__}: {exc}"
            outcomes[index] = _outcome(check, bool(success), observed, "python")
        else:
            to_gx.append((index, check))
    gx_version = _run_gx(suite, scalars, to_gx, outcomes)

    ordered = [outcomes[i] for i in range(len(suite.checks))]
    blocking = [o.describe() for o in ordered if o.blocking and not o.success]
    warnings = [o.describe() for o in ordered if not o.blocking and not o.success]
    successful = sum(o.success for o in ordered)
    return SuiteResult(
        suite_name=suite.name,
        source=spec.source,
        passed=not blocking,
        blocking_failures=blocking,
        warnings=warnings,
        outcomes=ordered,
        statistics={
            "evaluated": len(ordered),
            "successful": successful,
            "success_percent": 100.0 * successful / len(ordered) if ordered else 0.0,
        },
        gx_version=gx_version,
        duration_s=time.perf_counter() - started,
    )


def _unmet_needs(check: Check, frame: pd.DataFrame, spec: SuiteSpec) -> str | None:
    for column in check.needs:
        if column not in frame.columns:
            return f"column {column!r} is missing"
        kind = spec.columns.get(column)
        if kind and not kind_matches(frame[column].dtype, kind):
            return f"column {column!r} has dtype {frame[column].dtype}, not {kind}"
    return None


def _outcome(check: Check, success: bool, observed: str, expectation: str) -> ExpectationOutcome:
    return ExpectationOutcome(
        name=check.name, column=check.column, blocking=check.blocking, success=success,
        observed=_clip(observed), details=check.description, expectation=expectation,
    )


# ----------------------------------------------------------------------------------------------
# Great Expectations
# ----------------------------------------------------------------------------------------------
_LOCK = threading.Lock()
_INIT_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def warm_up() -> None:
    """Import GX and build its context ahead of the first suite (a few seconds, paid once per process)."""
    _gx_state()


def _gx_state() -> dict[str, Any]:
    """The process's GX module, ephemeral context and pandas datasource (created on first use)."""
    with _INIT_LOCK:  # the warm-up thread and the first suite may race
        if _STATE.get("pid") != os.getpid():
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _STATE.clear()
            _STATE.update(pid=os.getpid(), gx=gx, context=context,
                          datasource=context.data_sources.add_pandas("iarbre_quality"))
    return _STATE


def _run_gx(suite: Suite, frame: pd.DataFrame, checks: list[tuple[int, Check]],
            outcomes: dict[int, ExpectationOutcome]) -> str:
    with _LOCK:
        state = _gx_state()
        gx, datasource = state["gx"], state["datasource"]
        if not checks:
            return gx.__version__
        expectations = [
            getattr(gx.expectations, check.expectation)(
                **check.kwargs, meta={"iarbre_check": index}, severity="critical" if check.blocking else "warning",
            )
            for index, check in checks
        ]
        name = f"{suite.name}-{suite.source}-{uuid.uuid4().hex[:12]}"
        asset = datasource.add_dataframe_asset(name)
        try:
            batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
            results = batch.validate(gx.ExpectationSuite(name=name, expectations=expectations),
                                     result_format=RESULT_FORMAT)
        finally:
            datasource.delete_asset(name)
    by_index = dict(checks)
    for result in results.results:
        index = result.expectation_config.meta["iarbre_check"]
        check = by_index[index]
        error = result.exception_info or {}
        if _raised(error):
            observed, success = f"GX error: {_exception_message(error)}", False
        else:
            success = bool(result.success)
            observed = _observed(check, result.result or {}, frame, success)
        outcomes[index] = _outcome(check, success, observed, result.expectation_config.type)
    missing = [i for i, _ in checks if i not in outcomes]
    for index in missing:  # never let an expectation disappear silently
        outcomes[index] = _outcome(by_index[index], False, "GX returned no result", "")
    return gx.__version__


def _raised(info: dict) -> bool:
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _exception_message(info: dict) -> str:
    if info.get("exception_message"):
        return str(info["exception_message"])
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"])
    return "unknown error"


def _observed(check: Check, result: dict, frame: pd.DataFrame, success: bool) -> str:
    kind = check.expectation
    column = check.kwargs.get("column")
    if kind == "ExpectColumnToExist":
        return "present" if success else "missing"
    if kind == "ExpectColumnValuesToBeInTypeList":
        return f"dtype {frame[column].dtype}"
    if kind == "ExpectTableRowCountToBeBetween":
        return f"{result.get('observed_value', len(frame))} rows"
    if kind == "ExpectColumnDistinctValuesToContainSet":
        present = set(frame[column].dropna().unique().tolist())
        reported = result.get("partial_missing_list")
        wanted = list(check.kwargs["value_set"])
        missing = [v for v in wanted if v not in present] if reported is None else [v for v in wanted if v in reported]
        if missing:
            named = ", ".join(
                f"{_plain(v)!r}" + (f" ({check.value_notes[v]})" if v in check.value_notes else "") for v in missing
            )
            return f"missing {named}; {len(present)} distinct values present: {_values(sorted(present, key=str))}"
        return f"all {len(wanted)} values present"
    if kind == "ExpectColumnDistinctValuesToEqualSet":
        if frame.empty:
            return "no feature to read it from (empty layer)"
        return f"distinct values {_values(sorted(frame[column].dropna().unique().tolist(), key=str))}"
    if "unexpected_count" in result:
        total = result.get("element_count", len(frame))
        percent = result.get("unexpected_percent") or 0
        text = f"{result['unexpected_count']} of {total} unexpected ({percent:.2f} % of non-null)"
        if result.get("missing_count"):
            text += f", {result['missing_count']} null"
        examples = result.get("partial_unexpected_list") or []
        if examples and not success:
            text += f"; e.g. {_values(list(dict.fromkeys(_plain(v) for v in examples)))}"
        if kind == "ExpectColumnValuesToBeBetween" and frame[column].notna().any():
            values = pd.to_numeric(frame[column], errors="coerce")
            text += f"; range [{_number(values.min())}, {_number(values.max())}]"
        return text
    return str(result.get("observed_value", "")) or ("met" if success else "not met")


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1e4 else f"{value:.6g}"


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _values(values: list, limit: int = 8) -> str:
    shown = ", ".join(repr(_plain(v)) for v in values[:limit])
    more = f", … (+{len(values) - limit})" if len(values) > limit else ""
    return f"[{shown}{more}]"


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_OBSERVED else text[: _MAX_OBSERVED - 1] + "…"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
