-- Each score materialisation of a commune with the source versions it read, one row per input source
-- (what was used: partner, origin, raw and normalised SHA-256, when that version was fetched/accepted).
with runs as (
    select
        *,
        row_number() over (partition by commune order by materialised_at desc, run_id) = 1 as is_latest_run
    from {{ ref('stg_score_runs') }}
)
select
    r.run_id,
    r.commune,
    r.materialised_at,
    r.is_latest_run,
    r.code_version,
    r.catalogue_version,
    r.catalogue_sha256,
    r.territory,
    r.cells,
    i.source,
    coalesce(v.source_label, i.source) as source_label,
    i.partner,
    v.partner_name,
    i.origin,
    i.version,
    i.version_short,
    i.normalised_sha256,
    v.fetched_at as version_fetched_at,
    v.accepted_at as version_accepted_at,
    v.licence,
    (v.version is not null) as version_in_inventory
from runs as r
left join {{ ref('stg_score_run_inputs') }} as i using (run_id, commune)
left join {{ ref('stg_source_versions') }} as v on v.source = i.source and v.version = i.version
order by r.commune, r.materialised_at, i.source
