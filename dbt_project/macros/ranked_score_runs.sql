{#- stg_score_runs with, per commune, is_latest_run (newest materialised_at, then run_id) and the
    previous score run of the same commune (null for its first). One definition for every mart. -#}
{% macro ranked_score_runs() -%}
    select
        *,
        row_number() over (partition by commune order by materialised_at desc, run_id) = 1 as is_latest_run,
        lead(run_id) over (partition by commune order by materialised_at desc, run_id) as previous_run_id
    from {{ ref('stg_score_runs') }}
{%- endmacro %}
