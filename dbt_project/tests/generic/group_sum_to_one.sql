{#- Within each group whose `unless_zero` total is positive, `column` adds up to 1 (var share_tolerance). -#}
{% test group_sum_to_one(model, column, group_by, unless_zero) %}
select {{ group_by }}, sum({{ column }}) as total
from {{ model }}
group by {{ group_by }}
having sum({{ unless_zero }}) > 0
   and (sum({{ column }}) is null or abs(sum({{ column }}) - 1) > {{ var('share_tolerance') }})
{% endtest %}
