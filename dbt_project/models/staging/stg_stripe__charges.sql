-- One row per Stripe charge, amounts in major units, with what was refunded of it according
-- to the charge itself (the refunds list may add more: see int_payments__first).
with

source as (
    select * from {{ source('raw', 'stripe_charges') }}
),

currencies as (
    select * from {{ ref('currency_exponents') }}
),

latest as (
    {{ ranked_versions('source') }}
),

parsed as (
    select
        id as charge_id,
        {{ json_text('payload', ['customer']) }} as customer_id,
        {{ json_text('payload', ['invoice']) }} as invoice_id,
        {{ json_text('payload', ['status']) }} as charge_status,
        coalesce({{ json_text('payload', ['paid']) }} = 'true', false) as is_paid,
        coalesce({{ json_text('payload', ['refunded']) }} = 'true', false) as is_refunded_flag,
        lower({{ json_text('payload', ['currency']) }}) as currency,
        {{ safe_number(json_text('payload', ['amount']), dbt.type_bigint()) }}
            as amount_minor,
        coalesce(
            {{ safe_number(json_text('payload', ['amount_refunded']), dbt.type_bigint()) }},
            0
        ) as amount_refunded_minor,
        {{ epoch_seconds(json_text('payload', ['created'])) }} as created_epoch,
        is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
),

final as (
    select
        parsed.charge_id,
        parsed.customer_id,
        parsed.invoice_id,
        parsed.charge_status,
        parsed.is_paid,
        parsed.is_refunded_flag,
        parsed.currency,
        currencies.exponent is null as is_currency_unknown,
        parsed.amount_minor,
        parsed.amount_refunded_minor,
        {{ to_major_units('parsed.amount_minor', 'currencies.exponent') }} as amount,
        {{ to_major_units('parsed.amount_refunded_minor', 'currencies.exponent') }}
            as amount_refunded,
        parsed.created_epoch,
        {{ epoch_to_timestamp('parsed.created_epoch') }} as created_at,
        parsed.is_deleted,
        parsed.deleted_reason
    from parsed
    left join currencies on parsed.currency = currencies.currency
)

select * from final
