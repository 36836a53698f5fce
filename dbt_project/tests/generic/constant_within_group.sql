{#- Within each `group_by` group, `column` takes one value (NULL counts as a value). -#}
{% test constant_within_group(model, column, group_by) %}
select {{ group_by }}, count(distinct coalesce({{ column }}::varchar, chr(0))) as n_values
from {{ model }}
group by {{ group_by }}
having count(distinct coalesce({{ column }}::varchar, chr(0))) > 1
{% endtest %}
