{#- `column` of each row is the source's version in use in `versions` (the row with is_current), or NULL
    when that source has none in use. -#}
{% test is_the_version_in_use(model, column, versions, source_column='source', current_column='is_current') %}
with in_use as (
    select {{ source_column }} as source, version
    from {{ versions }}
    where {{ current_column }}
)
select m.{{ source_column }}, m.{{ column }} as recorded, in_use.version as in_use
from {{ model }} as m
left join in_use on in_use.source = m.{{ source_column }}
where m.{{ column }} is distinct from in_use.version
{% endtest %}
