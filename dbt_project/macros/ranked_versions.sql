{#- Every loaded version of each object with `version_rank`: 1 for the newest, by the object's
    own `updated_at` first and the load time second, so a re-load of the same version does not
    outrank a newer one. Staging models keep `version_rank = 1`. -#}
{% macro ranked_versions(relation, key='id', newest_first='updated_at desc, loaded_at desc') -%}
    select
        *,
        row_number() over (
            partition by {{ key }} order by {{ newest_first }}
        ) as version_rank
    from {{ relation }}
{%- endmacro %}
