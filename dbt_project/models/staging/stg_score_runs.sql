-- One row per (run, commune). class_breaks and grid are JSON text as recorded ([[max, class], ...] and
-- {crs, cell_size_m, subpixel_m, window}); provenance is the W3C PROV-JSON document of the (run, commune).
select
    run_id,
    commune,
    materialised_at,
    code_version,
    catalogue_version,
    catalogue_sha256,
    territory,
    cells::bigint as cells,
    package_version,
    git_commit,
    blocked_score::double as blocked_score,
    class_breaks,
    grid,
    mean_score::double as mean_score,
    oldest_input,
    oldest_input_changed_at,
    record_sha256,
    provenance
from {{ source('iarbre', 'score_runs') }}
