-- One row per Intercom company, the latest version of each.
with

source as (
    select * from {{ source('raw', 'intercom_companies') }}
),

latest as (
    {{ ranked_versions('source') }}
),

final as (
    select
        id as company_id,
        {{ json_text('payload', ['company_id']) }} as app_company_id,
        {{ json_text('payload', ['name']) }} as company_name,
        {{ json_text('payload', ['plan', 'name']) }} as company_plan,
        {{ safe_number(json_text('payload', ['size']), dbt.type_bigint()) }} as company_size,
        {{ json_text('payload', ['industry']) }} as company_industry,
        {{ safe_number(json_text('payload', ['monthly_spend']), dbt.type_numeric()) }}
            as company_monthly_spend,
        {{ safe_number(json_text('payload', ['user_count']), dbt.type_bigint()) }}
            as company_user_count,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['created_at']))) }}
            as created_at,
        {{ epoch_to_timestamp('updated_at') }} as updated_at,
        is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
)

select * from final
