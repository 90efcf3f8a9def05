{#- The per-action count columns of the feature mart: one (event name, column name) pair per
    event name in the data, most frequent first, at most `max_action_columns`.

    The names come from the warehouse at run time (`run_query`, only when dbt executes), or
    from the var `action_names` when set (unit tests set it: they cannot query a fixture).
    A column name is `n_action__` plus the event name lower-cased with every run of other
    characters than a-z and 0-9 turned into one underscore; names that collide get a numeric
    suffix, so every event keeps its own column. -#}
{% macro action_columns(events_relation) -%}
    {%- set names = var('action_names', none) -%}
    {%- if names is none -%}
        {%- set names = [] -%}
        {#- A missing table (a lint or a first compile before any build) means no names. -#}
        {%- if execute and load_relation(events_relation) is not none -%}
            {%- set query -%}
                select event_name
                from {{ events_relation }}
                group by event_name
                order by count(*) desc, event_name
                limit {{ var('max_action_columns') }}
            {%- endset -%}
            {%- set names = run_query(query).columns[0].values() | list -%}
        {%- endif -%}
    {%- endif -%}
    {%- set pairs = [] -%}
    {%- set bases = [] -%}
    {%- for name in names | sort -%}
        {%- set base = 'n_action__' ~ (modules.re.sub('[^a-z0-9]+', '_', name | lower)
            | trim('_') or 'unnamed') -%}
        {%- set seen = bases | select('equalto', base) | list | length -%}
        {%- do bases.append(base) -%}
        {%- do pairs.append((name, base if seen == 0 else base ~ '_' ~ (seen + 1))) -%}
    {%- endfor -%}
    {{ return(pairs) }}
{%- endmacro %}

{#- A string literal, quotes doubled, for event names inside SQL. -#}
{% macro sql_string(value) -%}
    '{{ value | replace("'", "''") }}'
{%- endmacro %}
