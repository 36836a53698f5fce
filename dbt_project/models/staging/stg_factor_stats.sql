select
    commune,
    factor,
    label as factor_label,
    weight::double as weight,
    blocking::boolean as blocking,
    meta,
    covered_cells::bigint as covered_cells,
    covered_area_m2::double as covered_area_m2,
    weighted_contribution::double as weighted_contribution,
    run_id
from {{ source('iarbre', 'factor_stats') }}
