{#- An integer amount in a currency's smallest unit turned into major units, given the
    currency's exponent from the `currency_exponents` seed (0 for JPY, 2 for USD, 3 for
    KWD). Null when the currency is unknown: a bare division by 100 would be wrong for
    JPY and KWD. -#}
{% macro to_major_units(amount, exponent) -%}
    {{ return(adapter.dispatch('to_major_units', 'nextbest')(amount, exponent)) }}
{%- endmacro %}

{% macro default__to_major_units(amount, exponent) -%}
    (cast({{ amount }} as {{ dbt.type_numeric() }}) / case {{ exponent }}
        when 0 then 1 when 1 then 10 when 2 then 100 when 3 then 1000 end)
{%- endmacro %}
