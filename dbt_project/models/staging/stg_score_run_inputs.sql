select
    run_id,
    commune,
    source,
    version,
    left(version, 12) as version_short,
    normalised_sha256,
    partner,
    origin
from {{ source('iarbre', 'score_run_inputs') }}
