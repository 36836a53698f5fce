"""The types suites are made of, shared by the core (`quality.suites`) and the families (`quality.families`).

Imports, without cycles: `spec` ← `frame`, `checks`; `checks`, `frame` ← `families` ← `suites` ← `runner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd

from .spec import NormaliseSummary, SuiteSpec, Thresholds


@dataclass(frozen=True)
class Check:
    """One expectation of a suite.

    `expectation`/`kwargs`: a `gx.expectations.<expectation>` run by GX; or `evaluate`: a Python check
    `(frame, gdf) -> (success, observed)` for what GX cannot express. `needs`: declared columns the check reads;
    when one is missing or not of its declared type the check is reported failed, not skipped.
    """

    name: str
    column: str | None
    blocking: bool
    description: str
    expectation: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    value_notes: Mapping[Any, str] = field(default_factory=dict)  # value -> what relies on it (for messages)
    evaluate: Callable[[pd.DataFrame, Any], tuple[bool, str]] | None = None

    @property
    def severity(self) -> str:
        return "blocking" if self.blocking else "warning"


@dataclass(frozen=True)
class SuiteContext:
    """A spec plus what only the caller knows at run time."""

    spec: SuiteSpec
    previous_row_count: int | None = None
    normalise_summary: NormaliseSummary | None = None

    @property
    def thresholds(self) -> Thresholds:
        return self.spec.thresholds


@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    checks: list[Check]
