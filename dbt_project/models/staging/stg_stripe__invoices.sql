-- One row per Stripe invoice, amounts in major units. Reads both API shapes of the
-- subscription link: `parent.subscription_details.subscription` (2025-03-31 and later) and
-- the older top-level `subscription`.
with

source as (
    select * from {{ source('raw', 'stripe_invoices') }}
),

currencies as (
    select * from {{ ref('currency_exponents') }}
),

latest as (
    {{ ranked_versions('source') }}
),

parsed as (
    select
        id as invoice_id,
        {{ json_text('payload', ['customer']) }} as customer_id,
        coalesce(
            {{ json_text('payload', ['parent', 'subscription_details', 'subscription']) }},
            {{ json_text('payload', ['subscription']) }}
        ) as subscription_id,
        {{ json_text('payload', ['status']) }} as invoice_status,
        {{ json_text('payload', ['billing_reason']) }} as billing_reason,
        lower({{ json_text('payload', ['currency']) }}) as currency,
        {{ safe_number(json_text('payload', ['amount_paid']), dbt.type_bigint()) }}
            as amount_paid_minor,
        {{ safe_number(json_text('payload', ['total']), dbt.type_bigint()) }}
            as total_minor,
        {{ epoch_seconds(json_text('payload', ['created'])) }} as created_epoch,
        {{ epoch_seconds(json_text('payload', ['status_transitions', 'paid_at'])) }}
            as paid_epoch,
        is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
),

final as (
    select
        parsed.invoice_id,
        parsed.customer_id,
        parsed.subscription_id,
        parsed.invoice_status,
        parsed.billing_reason,
        parsed.currency,
        currencies.exponent is null as is_currency_unknown,
        parsed.amount_paid_minor,
        {{ to_major_units('parsed.amount_paid_minor', 'currencies.exponent') }} as amount_paid,
        {{ to_major_units('parsed.total_minor', 'currencies.exponent') }} as total,
        {{ epoch_to_timestamp('parsed.created_epoch') }} as created_at,
        -- Paid invoices carry the time in status_transitions; older loads may lack it.
        case
            when parsed.invoice_status = 'paid'
                then coalesce(parsed.paid_epoch, parsed.created_epoch)
        end as paid_epoch,
        {{ epoch_to_timestamp('case when parsed.invoice_status = \'paid\''
            ~ ' then coalesce(parsed.paid_epoch, parsed.created_epoch) end') }} as paid_at,
        parsed.is_deleted,
        parsed.deleted_reason
    from parsed
    left join currencies on parsed.currency = currencies.currency
)

select * from final
