"""Great Expectations quality suites per source family, and the runner the asset checks call.

No Dagster here: `run_quality_suite` returns a plain `SuiteResult` that the asset checks turn into
check results. Great Expectations itself is imported on the first run only.
"""

from .runner import ExpectationOutcome, SuiteResult, run_quality_suite
from .suites import Check, Suite, build_suite

__all__ = ["Check", "ExpectationOutcome", "Suite", "SuiteResult", "build_suite", "run_quality_suite"]
