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

{#- All the texts at `fields` (a dict of name: list of keys) in one parse of the JSON, as a
    list (DuckDB) or array (PostgreSQL); `json_value` picks one out by name. DuckDB parses
    the document once for the whole list instead of once per field, which matters for
    payloads of several kilobytes. -#}
{% macro json_values(column, fields) -%}
    {{ return(adapter.dispatch('json_values', 'nextbest')(column, fields)) }}
{%- endmacro %}

{% macro default__json_values(column, fields) -%}
    array[
        {%- for keys in fields.values() %}
        {{ default__json_text(column, keys) }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    ]
{%- endmacro %}

{% macro duckdb__json_values(column, fields) -%}
    json_extract_string({{ column }}, [
        {%- for keys in fields.values() -%}
        '$.{{ keys | join(".") }}'{% if not loop.last %}, {% endif %}
        {%- endfor -%}
    ])
{%- endmacro %}

{% macro json_value(values, fields, name) -%}
    {{ values }}[{{ (fields.keys() | list).index(name) + 1 }}]
{%- endmacro %}
