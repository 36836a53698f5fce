{#- Models go to the schema named in their config (`staging`, `marts`), not `<target>_<name>`:
    readers (CLI report, exports) query marts.commune_plantability directly. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
