-- One row per Stripe refund, amounts in major units.
with

source as (
    select * from {{ source('raw', 'stripe_refunds') }}
),

currencies as (
    select * from {{ ref('currency_exponents') }}
),

latest as (
    {{ ranked_versions('source') }}
),

parsed as (
    select
        id as refund_id,
        {{ json_text('payload', ['charge']) }} as charge_id,
        {{ json_text('payload', ['status']) }} as refund_status,
        lower({{ json_text('payload', ['currency']) }}) as currency,
        {{ safe_number(json_text('payload', ['amount']), dbt.type_bigint()) }}
            as amount_minor,
        {{ epoch_seconds(json_text('payload', ['created'])) }} as created_epoch
    from latest
    where version_rank = 1
),

final as (
    select
        parsed.refund_id,
        parsed.charge_id,
        parsed.refund_status,
        parsed.currency,
        parsed.amount_minor,
        {{ to_major_units('parsed.amount_minor', 'currencies.exponent') }} as amount,
        parsed.created_epoch,
        {{ epoch_to_timestamp('parsed.created_epoch') }} as created_at
    from parsed
    left join currencies on parsed.currency = currencies.currency
)

select * from final
