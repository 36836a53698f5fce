{#- Publishing check of a per-class before/after table (area_before_m2, area_after_m2 per unit and class):
    per unit, the areas after add up to the unit's scored cells in `reference` x cell area, and the areas
    before add up to the cells of the unit's previous score run in `runs` (checked when `from_run` names a
    recorded score run of the unit; a first materialisation has no "before"). A class dropped from or
    duplicated in the table, or a diff inconsistent with the runs it names, fails here. -#}
{% test class_change_areas_balance(model, key, reference, reference_key, runs, from_run_column='from_run',
                                   reference_cells='cell_count') %}
with totals as (
    select {{ key }} as unit,
           any_value({{ from_run_column }}) as from_run,
           sum(area_before_m2) as area_before_m2,
           sum(area_after_m2) as area_after_m2
    from {{ model }}
    group by {{ key }}
),
expected as (
    select t.*,
           ref.{{ reference_cells }} * {{ var('cell_area_m2') }}::double as expected_after_m2,
           prev.cells * {{ var('cell_area_m2') }}::double as expected_before_m2
    from totals as t
    left join {{ reference }} as ref on ref.{{ reference_key }} = t.unit
    left join {{ runs }} as prev on prev.run_id = t.from_run and prev.commune = t.unit
)
select *
from expected
where expected_after_m2 is null
   or abs(area_after_m2 - expected_after_m2) > 1e-6
   or (expected_before_m2 is not null and abs(area_before_m2 - expected_before_m2) > 1e-6)
{% endtest %}
