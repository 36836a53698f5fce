"""Great Expectations quality suites per source family, and the runner the asset checks call.

No Dagster and no product code here: a suite is derived from a plain `SuiteSpec` (quality.spec), which
the product builds from its catalogue (`iarbre_assets.catalog.quality_spec.suite_spec`), and
`run_quality_suite` returns a plain `SuiteResult` that the asset checks turn into check results.
Great Expectations itself is imported on the first run only.
"""

from .checks import Check, Suite
from .runner import ExpectationOutcome, SuiteResult, run_quality_suite, warm_up
from .spec import BufferSpec, FilterSpec, NormaliseSummary, SuiteSpec, Thresholds
from .suites import build_suite

__all__ = [
    "BufferSpec",
    "Check",
    "ExpectationOutcome",
    "FilterSpec",
    "NormaliseSummary",
    "Suite",
    "SuiteResult",
    "SuiteSpec",
    "Thresholds",
    "build_suite",
    "run_quality_suite",
    "warm_up",
]
