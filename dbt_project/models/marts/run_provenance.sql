-- Each score materialisation of a commune with what it ran with (code, package and catalogue versions, git
-- commit, thresholds, grid, oldest input, record hash, W3C PROV-JSON document) and the source versions it
-- read, one row per input source (partner, origin, raw and normalised SHA-256, when fetched/accepted).
with runs as (
    {{ ranked_score_runs() }}
)
select
    r.run_id,
    r.commune,
    r.materialised_at,
    r.is_latest_run,
    r.code_version,
    r.package_version,
    r.git_commit,
    r.catalogue_version,
    r.catalogue_sha256,
    r.territory,
    r.cells,
    r.mean_score,
    r.blocked_score,
    r.class_breaks,
    r.grid,
    r.oldest_input,
    r.oldest_input_changed_at,
    r.record_sha256,
    r.provenance,
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
