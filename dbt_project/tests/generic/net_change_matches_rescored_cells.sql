{#- Per unit, the class areas gained and lost cancel out: sum over classes of area_change_m2 is 0 when no cell
    became scored or unscored, and otherwise (newly scored - no longer scored cells) x cell area, those cells
    read from the transition table `transitions`. -#}
{% test net_change_matches_rescored_cells(model, key, transitions, change_column='area_change_m2') %}
with net as (
    select {{ key }} as unit, sum({{ change_column }}) as net_change_m2
    from {{ model }}
    group by {{ key }}
),
rescored as (
    select {{ key }} as unit,
           coalesce(sum(cells) filter (where from_class is null and to_class is not null), 0) as cells_newly_scored,
           coalesce(sum(cells) filter (where to_class is null and from_class is not null), 0) as cells_no_longer_scored
    from {{ transitions }}
    group by {{ key }}
)
select net.unit, net.net_change_m2, r.cells_newly_scored, r.cells_no_longer_scored
from net
full outer join rescored as r on r.unit = net.unit
where net.unit is null
   or r.unit is null
   or abs(net.net_change_m2
          - (r.cells_newly_scored - r.cells_no_longer_scored) * {{ var('cell_area_m2') }}::double) > 1e-6
{% endtest %}
