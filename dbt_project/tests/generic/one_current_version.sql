{#- Each source with an accepted version has exactly one current version; a current version was accepted
    and did not fail its checks; a source with no accepted version has none current. -#}
{% test one_current_version(model, source_column='source', current_column='is_current', accepted_column='accepted_at', status_column='check_status') %}
select {{ source_column }},
       count(*) filter (where {{ current_column }}) as n_current,
       count(*) filter (where {{ accepted_column }} is not null) as n_accepted,
       count(*) filter (where {{ current_column }} and ({{ accepted_column }} is null or {{ status_column }} = 'failed')) as n_bad_current
from {{ model }}
group by {{ source_column }}
having (n_accepted > 0 and n_current <> 1)
    or (n_accepted = 0 and n_current > 0)
    or n_bad_current > 0
{% endtest %}
