{#- A select of (key_column, attribute_name, attribute_value) with one row per entry of the
    JSON object at `object_key` inside `json_column`, for the rows of `relation` that pass
    `where`. Values are text; JSON nulls are left out. -#}
{% macro json_object_entries(relation, key_column, json_column, object_key, where) -%}
    {{ return(adapter.dispatch('json_object_entries', 'nextbest')(
        relation, key_column, json_column, object_key, where)) }}
{%- endmacro %}

{% macro default__json_object_entries(relation, key_column, json_column, object_key, where) -%}
    select
        r.{{ key_column }},
        e.key as attribute_name,
        e.value as attribute_value
    from {{ relation }} as r
    cross join lateral jsonb_each_text(r.{{ json_column }}::jsonb -> '{{ object_key }}') as e
    where {{ where }} and e.value is not null
{%- endmacro %}

{% macro duckdb__json_object_entries(relation, key_column, json_column, object_key, where) -%}
    select
        r.{{ key_column }},
        e.key as attribute_name,
        e.value ->> '$' as attribute_value
    from {{ relation }} as r,
        json_each(r.{{ json_column }}, '$.{{ object_key }}') as e
    where {{ where }} and e.type != 'NULL'
{%- endmacro %}
