{#- Per-class cells / area / share columns for a table of tiles aggregated by `class`.
    Classes with no cells give 0, never null. -#}
{% macro class_count_columns(class_column='class') -%}
    {%- for c in var('classes') %}
    count(*) filter (where {{ class_column }} = {{ c }}) as cells_class_{{ c }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{% macro class_area_share_columns(cells_column='cell_count') -%}
    {%- for c in var('classes') %}
    coalesce(cells_class_{{ c }}, 0)::bigint as cells_class_{{ c }},
    coalesce(cells_class_{{ c }}, 0) * {{ var('cell_area_m2') }}::double as area_m2_class_{{ c }},
    case when coalesce({{ cells_column }}, 0) > 0
         then coalesce(cells_class_{{ c }}, 0)::double / {{ cells_column }} else 0 end as share_class_{{ c }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
