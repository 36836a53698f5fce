{#- Publishing check: for every unit (commune or IRIS) of `reference`, the class areas of the mart add up
    to reference.cell_count x cell area, and the mart has exactly the reference's units. A unit whose
    tiles are missing, duplicated or carry an unknown class fails here. -#}
{% test class_areas_match_cells(model, key, reference, reference_key, reference_cells='cell_count') %}
with mart as (
    select {{ key }} as unit,
           {% for c in var('classes') %}coalesce(area_m2_class_{{ c }}, 0){{ " + " if not loop.last }}{% endfor %} as class_area_m2,
           area_m2
    from {{ model }}
),
ref as (
    select {{ reference_key }} as unit, {{ reference_cells }} * {{ var('cell_area_m2') }}::double as expected_area_m2
    from {{ reference }}
)
select coalesce(mart.unit, ref.unit) as unit, mart.class_area_m2, mart.area_m2, ref.expected_area_m2
from mart
full outer join ref on mart.unit = ref.unit
where mart.unit is null
   or ref.unit is null
   or abs(mart.class_area_m2 - ref.expected_area_m2) > 1e-6
   or abs(mart.area_m2 - ref.expected_area_m2) > 1e-6
{% endtest %}
