-- ST_Area of the stored outline is kept next to the declared area: a cross-check, and the reason the
-- spatial extension must load (offline, from its wheel) in every dbt connection.
select
    code::varchar as commune,
    name::varchar as commune_name,
    area_m2::double as area_m2,
    ST_Area(geom)::double as geom_area_m2,
    cell_count::bigint as cell_count,
    source_version,
    ST_IsValid(geom) as geom_is_valid
from {{ source('iarbre', 'communes') }}
