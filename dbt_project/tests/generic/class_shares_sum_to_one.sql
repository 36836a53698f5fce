{#- Within each row that has cells, share_class_* add up to 1 (within var share_tolerance). -#}
{% test class_shares_sum_to_one(model, cells_column='cell_count') %}
select *
from (
    select *, {% for c in var('classes') %}share_class_{{ c }}{{ " + " if not loop.last }}{% endfor %} as share_total
    from {{ model }}
    where {{ cells_column }} > 0
)
where share_total is null or abs(share_total - 1) > {{ var('share_tolerance') }}
{% endtest %}
