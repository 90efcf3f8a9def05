{#- The value of an integer var, refused at compile time, naming the var, when it is not a
    whole number from `lowest` to `highest`. The settings check the same bounds when Dagster
    runs dbt; `dbt build --vars ...` from the shell is checked only here. Unchecked, a window
    of 0 compiles an empty `day_numbers` and a text gap compiles `x * 60`: the database then
    fails on SQL the user never wrote. -#}
{% macro whole_number_var(name, lowest, highest, default=none) -%}
    {%- set value = var(name, default) -%}
    {%- if value is boolean or value is not number or value != value | int
        or value < lowest or value > highest -%}
        {{- exceptions.raise_compiler_error(
            "var " ~ name ~ " = " ~ (value | tojson) ~ " is not a whole number from "
            ~ lowest ~ " to " ~ highest
        ) -}}
    {%- endif -%}
    {{- return(value | int) -}}
{%- endmacro %}
