-- One row per commune of the territory: its scored cells by plantability class (cells, m², share).
with per_commune as (
    select
        commune,
        count(*) as cell_count,
        avg(score)::double as mean_score,
        count(*) filter (where blocked) as cells_blocked,
        {{ class_count_columns('"class"') }}
    from {{ ref('stg_tiles') }}
    group by commune
)
select
    c.commune,
    c.commune_name,
    coalesce(p.cell_count, 0)::bigint as cell_count,
    coalesce(p.cell_count, 0) * {{ var('cell_area_m2') }}::double as area_m2,
    p.mean_score,
    coalesce(p.cells_blocked, 0)::bigint as cells_blocked,
    {{ class_area_share_columns('p.cell_count') }}
from {{ ref('stg_communes') }} as c
left join per_commune as p using (commune)
order by c.commune
