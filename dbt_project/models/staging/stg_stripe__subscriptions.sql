-- One row per Stripe subscription, the latest version of each.
with

source as (
    select * from {{ source('raw', 'stripe_subscriptions') }}
),

latest as (
    {{ ranked_versions('source') }}
),

final as (
    select
        id as subscription_id,
        {{ json_text('payload', ['customer']) }} as customer_id,
        {{ json_text('payload', ['status']) }} as subscription_status,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['created']))) }}
            as created_at,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['trial_start']))) }}
            as trial_started_at,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['trial_end']))) }}
            as trial_ends_at,
        {{ epoch_to_timestamp(epoch_seconds(json_text('payload', ['canceled_at']))) }}
            as canceled_at,
        is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
)

select * from final
