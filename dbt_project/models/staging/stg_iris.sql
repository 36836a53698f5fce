select
    code::varchar as iris,
    name::varchar as iris_name,
    commune::varchar as commune,
    area_m2::double as area_m2,
    ST_Area(geom)::double as geom_area_m2,
    cell_count::bigint as cell_count,
    coalesce(synthetic, false) as synthetic,
    ST_IsValid(geom) as geom_is_valid
from {{ source('iarbre', 'iris') }}
