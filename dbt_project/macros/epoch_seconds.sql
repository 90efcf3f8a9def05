{#- A Unix-seconds value read from JSON text, as bigint; null when the text is no number.
    Numeric first, because JSON numbers may be written with a fraction. -#}
{% macro epoch_seconds(text_expression) -%}
    cast({{ safe_number(text_expression, dbt.type_numeric()) }} as {{ dbt.type_bigint() }})
{%- endmacro %}

{#- Seconds in a day, for the day arithmetic done on Unix seconds. -#}
{% macro seconds_per_day() -%}86400{%- endmacro %}
