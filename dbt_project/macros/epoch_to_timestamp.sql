{#- Unix seconds to a UTC timestamp without time zone. Every timestamp of the project is
    UTC; keeping them zone-less stops a session's time zone from changing what is shown. -#}
{% macro epoch_to_timestamp(column) -%}
    {{ return(adapter.dispatch('epoch_to_timestamp', 'nextbest')(column)) }}
{%- endmacro %}

{% macro default__epoch_to_timestamp(column) -%}
    (to_timestamp({{ column }}) at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__epoch_to_timestamp(column) -%}
    make_timestamp(cast({{ column }} as bigint) * 1000000)
{%- endmacro %}
