"""Automation conditions, declared once; every asset factory (dbt's translator included) takes them from here.

Data changes are propagated by the `partner_refresh` sensor (automation/refresh.py): one run per update.
Declarative automation handles what is not data: an asset whose code or catalogue entry changed is
recomputed (for all its partitions), and the refresh sensor then brings its descendants up to date.
"""

import dagster as dg

AC = dg.AutomationCondition
_GUARDS = ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()

# Recompute when our code or catalogue entry changed (weights, filters, SQL): the code version says so.
CODE_CHANGED = (AC.code_version_changed().since_last_handled() & _GUARDS).with_label("when its code changes")
MART_AUTOMATION = CODE_CHANGED


# The inventory's freshness columns go stale with the clock alone: rebuild it daily too.
DAILY_OR_CODE_CHANGED = (CODE_CHANGED | (AC.on_cron("0 4 * * *", "Europe/Paris") & ~AC.in_progress())).with_label(
    "when its code changes, and daily at 04:00")
