-- The weights each score materialisation of a commune used, as recorded by that run (not today's
-- catalogue): "which weights did run X use" is `where run_id = X`. previous_* compare with the commune's
-- previous score run (null for its first run, or a factor that run did not have).
with runs as (
    {{ ranked_score_runs() }}
)
select
    w.run_id,
    w.commune,
    w.factor,
    w.weight,
    w.blocking,
    w.meta,
    r.materialised_at,
    r.is_latest_run,
    r.blocked_score,
    r.previous_run_id,
    p.weight as previous_weight,
    p.blocking as previous_blocking,
    (r.previous_run_id is not null
     and (p.factor is null or p.weight is distinct from w.weight or p.blocking is distinct from w.blocking))
        as weight_changed
from {{ ref('stg_score_run_weights') }} as w
join runs as r using (run_id, commune)
left join {{ ref('stg_score_run_weights') }} as p
    on p.run_id = r.previous_run_id and p.commune = w.commune and p.factor = w.factor
order by w.commune, r.materialised_at, w.factor
