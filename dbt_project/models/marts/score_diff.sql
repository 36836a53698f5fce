-- Per commune, how its cells moved between its last two class materialisations (from_run -> to_run), one
-- row per (from_class, to_class), unchanged diagonal included. A NULL class is a cell unscored on that
-- side (from_run NULL: the commune's first materialisation, every cell newly scored).
select
    d.commune,
    c.commune_name,
    d.from_run,
    d.to_run,
    fr.materialised_at as from_materialised_at,
    tr.materialised_at as to_materialised_at,
    d.from_class,
    d.to_class,
    d.cells,
    d.cells * {{ var('cell_area_m2') }}::double as area_m2,
    (d.from_class is distinct from d.to_class) as changed,
    case when d.from_class is null then 'newly_scored'
         when d.to_class is null then 'no_longer_scored'
         when d.from_class = d.to_class then 'unchanged'
         else 'reclassified' end as transition
from {{ ref('stg_score_diff') }} as d
left join {{ ref('stg_communes') }} as c using (commune)
left join {{ ref('stg_score_runs') }} as fr on fr.run_id = d.from_run and fr.commune = d.commune
left join {{ ref('stg_score_runs') }} as tr on tr.run_id = d.to_run and tr.commune = d.commune
order by d.commune, d.from_class nulls first, d.to_class nulls first
