-- The weights a score materialisation of a commune used, as recorded then (not today's catalogue).
select
    run_id,
    commune,
    factor,
    weight::double as weight,
    blocking::boolean as blocking,
    meta
from {{ source('iarbre', 'score_run_weights') }}
