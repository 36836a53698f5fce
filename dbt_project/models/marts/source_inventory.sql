-- One row per source: the version in use (is_current), or the latest seen when none was ever accepted,
-- with its freshness. Freshness (age_days, status ok / late / never, content changed at, last fetch, last
-- rejected delivery) is the ONE definition computed by the platform (iarbre.source_freshness, written
-- with the versions by the source_inventory asset from iarbre_assets/provenance/freshness.py) as of
-- freshness_as_of: taken as is, never recomputed against the clock here. Timestamps are naive UTC.
with ranked as (
    select
        *,
        row_number() over (partition by source order by is_current desc, fetched_at desc, version) as pick,
        row_number() over (partition by source order by fetched_at desc, version) as recency,
        count(*) over (partition by source) as versions_seen,
        bool_or(accepted_at is not null) over (partition by source) as has_accepted_version
    from {{ ref('stg_source_versions') }}
),
latest as (
    select source, version as latest_version, left(version, 12) as latest_version_short,
           check_status as latest_check_status, fetched_at as latest_fetched_at
    from ranked where recency = 1
)
select
    r.source,
    r.source_label,
    r.family,
    r.partner,
    r.partner_name,
    r.connector,
    r.origin,
    r.licence,
    r.is_current as has_current_version,
    r.version,
    r.version_short,
    r.normalised_sha256,
    r.fetched_at,
    r.accepted_at,
    r.size_bytes,
    r.rows_raw,
    r.rows_normalised,
    r.rows_dropped,
    r.rows_repaired,
    r.check_status,
    r.checks_failed,
    r.cadence,
    r.cadence_days,
    f.age_days,
    (f.status = 'late') as is_stale,
    f.status as freshness_status,
    f.content_changed_at,
    f.last_fetch_at,
    f.last_rejected_version,
    f.last_rejected_version_short,
    f.last_rejected_at,
    f.last_rejected_reason,
    f.as_of as freshness_as_of,
    r.versions_seen::integer as versions_seen,
    l.latest_version,
    l.latest_version_short,
    l.latest_check_status,
    l.latest_fetched_at,
    (l.latest_version <> r.version) as newer_version_not_in_use
from ranked as r
join latest as l using (source)
left join {{ ref('stg_source_freshness') }} as f using (source)
where r.pick = 1
order by r.source
