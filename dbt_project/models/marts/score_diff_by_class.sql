-- Per commune of score_diff and per plantability class: the area the class had before (from_run) and
-- after (to_run), and what it gained (+) or lost (-). Every class of var('classes') has a row (0, never
-- null). Cells unscored on one side count on the other side only, so the net change over a commune's
-- classes is (newly scored - no longer scored cells) x cell area: 0 when no cell changed status.
with classes as (
    select unnest({{ var('classes') }})::utinyint as "class"
),
communes as (
    select commune, any_value(commune_name) as commune_name, any_value(from_run) as from_run,
           any_value(to_run) as to_run
    from {{ ref('score_diff') }}
    group by commune
),
before as (
    select commune, from_class as "class", sum(cells) as cells
    from {{ ref('score_diff') }} where from_class is not null group by all
),
after as (
    select commune, to_class as "class", sum(cells) as cells
    from {{ ref('score_diff') }} where to_class is not null group by all
)
select
    u.commune,
    u.commune_name,
    u.from_run,
    u.to_run,
    k."class",
    coalesce(b.cells, 0)::bigint as cells_before,
    coalesce(a.cells, 0)::bigint as cells_after,
    coalesce(b.cells, 0) * {{ var('cell_area_m2') }}::double as area_before_m2,
    coalesce(a.cells, 0) * {{ var('cell_area_m2') }}::double as area_after_m2,
    (coalesce(a.cells, 0) - coalesce(b.cells, 0)) * {{ var('cell_area_m2') }}::double as area_change_m2
from communes as u
cross join classes as k
left join before as b on b.commune = u.commune and b."class" = k."class"
left join after as a on a.commune = u.commune and a."class" = k."class"
order by u.commune, k."class"
