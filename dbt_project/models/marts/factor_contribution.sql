-- Which factors drive a commune's score: rank 1 = the largest absolute weighted contribution.
-- contribution_share = |contribution| / sum of |contribution| in the commune (0 when nothing is covered).
with stats as (
    select *, abs(weighted_contribution) as abs_contribution
    from {{ ref('stg_factor_stats') }}
)
select
    s.commune,
    c.commune_name,
    s.factor,
    s.factor_label,
    s.meta,
    s.weight,
    s.blocking,
    case when s.blocking then 'blocking'
         when s.weight < 0 then 'constraint'
         when s.weight > 0 then 'favourable'
         else 'neutral' end as effect,
    s.covered_cells,
    s.covered_area_m2,
    s.weighted_contribution,
    s.abs_contribution,
    row_number() over (partition by s.commune order by s.abs_contribution desc, s.factor) as contribution_rank,
    coalesce(s.abs_contribution / nullif(sum(s.abs_contribution) over (partition by s.commune), 0), 0)
        as contribution_share,
    s.run_id
from stats as s
left join {{ ref('stg_communes') }} as c using (commune)
order by s.commune, contribution_rank
