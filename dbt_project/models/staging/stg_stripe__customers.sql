-- One row per Stripe customer, deleted ones kept and flagged so their invoices still join.
with

source as (
    select * from {{ source('raw', 'stripe_customers') }}
),

latest as (
    {{ ranked_versions('source') }}
),

final as (
    select
        id as customer_id,
        nullif(trim({{ json_text('payload', ['metadata', 'app_user_id']) }}), '')
            as app_user_id,
        {{ json_text('payload', ['email']) }} as email,
        nullif(lower(trim({{ json_text('payload', ['email']) }})), '') as email_normalized,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['created']))) }}
            as created_at,
        {{ epoch_to_timestamp('updated_at') }} as updated_at,
        -- Stripe answers a deleted customer as {"id", "deleted": true}.
        (
            is_deleted
            or coalesce({{ json_text('payload', ['deleted']) }} = 'true', false)
        ) as is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
)

select * from final
