select
    run_id,
    commune,
    materialised_at,
    code_version,
    catalogue_version,
    catalogue_sha256,
    territory,
    cells::bigint as cells
from {{ source('iarbre', 'score_runs') }}
