{#- A Unix-seconds value read from JSON text, as bigint. Text that is no number gives null
    where the engine has a safe cast (DuckDB); numeric first, because JSON numbers may be
    written with a fraction. -#}
{% macro epoch_seconds(text_expression) -%}
    {{ dbt.safe_cast(dbt.safe_cast(text_expression, dbt.type_numeric()), dbt.type_bigint()) }}
{%- endmacro %}

{#- Seconds in a day, for the day arithmetic done on Unix seconds. -#}
{% macro seconds_per_day() -%}86400{%- endmacro %}
