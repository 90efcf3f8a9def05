{#- PostgreSQL caps identifiers at 63 characters, and dbt names a unit test's scratch table after
    the test, so a test with a long, sentence-like name fails on PostgreSQL before it runs
    ("Relation name ... is longer than 63 characters"). This is dbt's unit-test
    materialization for PostgreSQL with one change: the scratch table is named by the start of
    the test's name and a hash of all of it. Remove it once dbt-postgres shortens these names
    itself. -#}
{%- materialization unit, adapter='postgres' -%}
    {%- set short_name = this.identifier[:40] ~ '_' ~ local_md5(this.identifier)[:8] -%}
    {%- set target_relation = this.incorporate(path={'identifier': short_name}, type='table') -%}
    {%- set temp_relation = make_temp_relation(target_relation) -%}
    {%- set sql_header = config.get('sql_header') if flags.REQUIRE_SQL_HEADER_IN_TEST_CONFIGS else none -%}
    {%- set expected_rows = config.get('expected_rows') -%}
    {%- set expected_sql = config.get('expected_sql') -%}

    {#- The model's columns and types, read from an empty table built from its SQL. -#}
    {%- do run_query(get_create_table_as_sql(true, temp_relation, get_empty_subquery_sql(sql))) -%}
    {%- set data_types, quoted = {}, {} -%}
    {%- for column in adapter.get_columns_in_relation(temp_relation) -%}
        {%- do data_types.update({column.name | lower: column.data_type}) -%}
        {%- do quoted.update({column.name | lower: column.quoted}) -%}
    {%- endfor -%}

    {%- if expected_rows | length > 0 -%}
        {%- set tested_columns = expected_rows[0].keys() -%}
    {%- else -%}
        {%- set tested_columns = get_columns_in_query(sql) -%}
    {%- endif -%}
    {%- set tested_quoted = [] -%}
    {%- for name in tested_columns -%}
        {%- do tested_quoted.append(quoted[name | lower]) -%}
    {%- endfor -%}
    {%- if not expected_sql -%}
        {%- set expected_sql = get_expected_sql(expected_rows, data_types, quoted) -%}
    {%- endif -%}

    {%- call statement('main', fetch_result=True) -%}
        {%- if sql_header %}{{ sql_header }}{% endif %}
        {{ get_unit_test_sql(sql, expected_sql, tested_quoted) }}
    {%- endcall -%}

    {%- do adapter.drop_relation(temp_relation) -%}
    {{ return({'relations': []}) }}
{%- endmaterialization -%}

{#- DuckDB divides a decimal by an integer in double precision; PostgreSQL keeps a numeric
    with sixteen decimals, which unit tests then compare as text ("50.0000000000000000" is not
    "50.0"). A double on PostgreSQL gives both engines the same type and the same values. -#}
{% macro postgres__to_major_units(amount, exponent) -%}
    cast({{ default__to_major_units(amount, exponent) }} as double precision)
{%- endmacro %}
