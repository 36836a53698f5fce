-- One row per cell. A view: 20 M Lyon cells are not copied; the marts aggregate straight from it.
select
    cell_id::bigint as cell_id,
    commune::varchar as commune,
    nullif(trim(iris), '')::varchar as iris,
    x::double as x,
    y::double as y,
    score::real as score,
    "class"::utinyint as "class",
    blocked::boolean as blocked,
    blocking_factor,
    columns('^top[0-9]+$'),
    columns('^top[0-9]+_pct$'),
    columns('^meta_'),
    -- an aggregated group (the networks) sums several coverages; a single factor never exceeds 100 %
    coalesce(greatest(
        {%- for k in range(1, var('top_factors') + 1) %}
        case when top{{ k }} in ('{{ var('aggregated_top_groups') | join("', '") }}') then 0 else top{{ k }}_pct end
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    ), 0) as top_pct_max,
    run_id
from {{ source('iarbre', 'tiles') }}
