{#- Running counts of many event names, packed several to one number.

    A window running sum costs about the same for one wide number as for one integer, so
    fct_user_features sums `2^(20·slot)` for the event of each slot and reads the counts
    back with integer division: six 20-bit counts fit one 128-bit integer. A count reaching
    2^20 would spill into the next slot; the test on int_events__sessionized.step_number
    (below 2^20 events per user) rules that out. -#}

{% macro packed_slots() -%}6{%- endmacro %}
{% macro packed_slot_bits() -%}20{%- endmacro %}

{% macro packed_count_type() -%}
    {{ return(adapter.dispatch('packed_count_type', 'nextbest')()) }}
{%- endmacro %}

{% macro default__packed_count_type() -%}numeric(38, 0){%- endmacro %}

{% macro duckdb__packed_count_type() -%}hugeint{%- endmacro %}

{#- The running sum over `window` packing the events of `pairs` ((name, column) pairs, at
    most packed_slots()) into one number. -#}
{% macro packed_running_count(pairs, window) -%}
    sum(
        case event_name
            {%- for name, column in pairs %}
            when {{ sql_string(name) }}
                then cast({{ 2 ** (packed_slot_bits() | int * loop.index0) }}
                    as {{ packed_count_type() }})
            {%- endfor %}
            else cast(0 as {{ packed_count_type() }})
        end
    ) over {{ window }}
{%- endmacro %}

{#- The count in slot `slot` of a packed number, as an integer. -#}
{% macro unpack_count(packed, slot) -%}
    {{ return(adapter.dispatch('unpack_count', 'nextbest')(packed, slot)) }}
{%- endmacro %}

{% macro default__unpack_count(packed, slot) -%}
    cast(mod(div({{ packed }}, {{ 2 ** (packed_slot_bits() | int * slot) }}),
        {{ 2 ** (packed_slot_bits() | int) }}) as {{ dbt.type_int() }})
{%- endmacro %}

{#- Shifts and masks: DuckDB divides 128-bit integers far slower than it shifts them. -#}
{% macro duckdb__unpack_count(packed, slot) -%}
    cast(({{ packed }} >> {{ packed_slot_bits() | int * slot }})
        & {{ 2 ** (packed_slot_bits() | int) - 1 }} as {{ dbt.type_int() }})
{%- endmacro %}
