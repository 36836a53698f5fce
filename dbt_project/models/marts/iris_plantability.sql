-- One row per IRIS (empty when the territory has none). Cells belong to the IRIS that contains their
-- centre (tiles.iris, assigned upstream).
with per_iris as (
    select
        iris,
        count(*) as cell_count,
        avg(score)::double as mean_score,
        count(*) filter (where blocked) as cells_blocked,
        {{ class_count_columns('"class"') }}
    from {{ ref('stg_tiles') }}
    where iris is not null
    group by iris
)
select
    i.iris,
    i.iris_name,
    i.commune,
    i.synthetic,
    coalesce(p.cell_count, 0)::bigint as cell_count,
    coalesce(p.cell_count, 0) * {{ var('cell_area_m2') }}::double as area_m2,
    p.mean_score,
    coalesce(p.cells_blocked, 0)::bigint as cells_blocked,
    {{ class_area_share_columns('p.cell_count') }}
from {{ ref('stg_iris') }} as i
left join per_iris as p using (iris)
order by i.iris
