{#- The text at a path inside a JSON column, or null when the path is missing.
    `keys` is a list of object keys, outermost first. JSON access is the one thing the
    engines spell differently, so it goes through adapter.dispatch. -#}
{% macro json_text(column, keys) -%}
    {{ return(adapter.dispatch('json_text', 'nextbest')(column, keys)) }}
{%- endmacro %}

{% macro default__json_text(column, keys) -%}
    ({{ column }}::jsonb #>> '{{ "{" ~ keys | join(",") ~ "}" }}')
{%- endmacro %}

{% macro duckdb__json_text(column, keys) -%}
    json_extract_string({{ column }}, '$.{{ keys | join(".") }}')
{%- endmacro %}
