-- The one definition of freshness (iarbre_assets/provenance/freshness.py), as of `as_of`: taken as is,
-- never recomputed against the clock. Timestamps are naive UTC.
select
    source,
    partner,
    current_version,
    left(current_version, 12) as current_version_short,
    content_changed_at,
    last_fetch_at,
    cadence,
    cadence_days::integer as cadence_days,
    age_days::integer as age_days,
    lower(status) as status,
    last_rejected_version,
    left(last_rejected_version, 12) as last_rejected_version_short,
    last_rejected_at,
    last_rejected_reason,
    as_of
from {{ source('iarbre', 'source_freshness') }}
