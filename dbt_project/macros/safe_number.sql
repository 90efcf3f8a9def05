{#- Text to a number type, null when the text is no number. dbt's own safe_cast is a plain
    cast on these adapters and fails the model on text such as "pro". -#}
{% macro safe_number(text_expression, type) -%}
    {{ return(adapter.dispatch('safe_number', 'nextbest')(text_expression, type)) }}
{%- endmacro %}

{% macro default__safe_number(text_expression, type) -%}
    case
        when ({{ text_expression }}) ~ '^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$'
            then cast({{ text_expression }} as {{ type }})
    end
{%- endmacro %}

{% macro duckdb__safe_number(text_expression, type) -%}
    try_cast({{ text_expression }} as {{ type }})
{%- endmacro %}
