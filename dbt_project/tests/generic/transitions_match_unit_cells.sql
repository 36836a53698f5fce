{#- Publishing check of a class-transition table: for every unit of `model`, the cells it has after the
    transition (rows whose `to_column` is not null) add up to the unit's scored cells in `reference`.
    A diff that misses or double-counts cells, or a unit unknown to the reference, fails here. -#}
{% test transitions_match_unit_cells(model, key, reference, reference_key, to_column='to_class',
                                     cells_column='cells', reference_cells='cell_count') %}
with diff as (
    select {{ key }} as unit, sum({{ cells_column }}) filter (where {{ to_column }} is not null) as cells_after
    from {{ model }}
    group by {{ key }}
)
select diff.unit, diff.cells_after, ref.{{ reference_cells }} as reference_cells
from diff
left join {{ reference }} as ref on ref.{{ reference_key }} = diff.unit
where ref.{{ reference_key }} is null
   or coalesce(diff.cells_after, 0) <> ref.{{ reference_cells }}
{% endtest %}
