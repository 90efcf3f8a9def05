-- Grain: one row per app user: did the first real payment come within
-- `conversion_window_days` of sign-up? The window is closed at both ends: a payment at
-- exactly sign-up plus the window still converts, one second later does not. A user whose
-- window had not closed by the data's end and who has not paid is censored: the label is
-- not known yet. The data's end is the var `as_of` (Unix seconds) when set, else the latest
-- event or payment in the warehouse; payments after it are not seen.
with

users as (
    select * from {{ ref('dim_users') }}
),

payments as (
    select * from {{ ref('int_payments__first') }}
),

data_end as (
    {%- if var('as_of', none) is not none %}
    {#- Below 10^11: a larger value is most likely milliseconds, as for the raw layer's times. #}
    select
        cast({{ whole_number_var('as_of', 0, 99999999999) }} as {{ dbt.type_bigint() }})
            as data_end_epoch
    {%- else %}
        select
            greatest(
                coalesce((select max(occurred_epoch) from {{ ref('int_events__sessionized') }}), 0),
                coalesce((select max(first_payment_epoch) from payments), 0)
            ) as data_end_epoch
    {%- endif %}
),

windows as (
    select
        users.user_id,
        users.signed_up_epoch,
        users.signed_up_at,
        users.history_complete,
        users.signed_up_epoch
        + {{ whole_number_var('conversion_window_days', 1, 365) }} * {{ seconds_per_day() }}
            as window_ends_epoch,
        data_end.data_end_epoch,
        case
            when payments.first_payment_epoch <= data_end.data_end_epoch
                then payments.first_payment_epoch
        end as first_payment_epoch
    from users
    cross join data_end
    left join payments on users.user_id = payments.user_id
),

final as (
    select
        user_id,
        signed_up_at,
        {{ epoch_to_timestamp('first_payment_epoch') }} as first_payment_at,
        {{ epoch_to_timestamp('window_ends_epoch') }} as window_ends_at,
        coalesce(first_payment_epoch <= window_ends_epoch, false) as converted_within_window,
        -- A double on every engine: PostgreSQL would keep a numeric with sixteen decimals.
        cast(first_payment_epoch - signed_up_epoch as double precision)
        / {{ seconds_per_day() }} as days_to_convert,
        coalesce(first_payment_epoch < signed_up_epoch, false) as paid_before_signup,
        coalesce(not (first_payment_epoch <= window_ends_epoch), true)
        and window_ends_epoch > data_end_epoch as is_censored,
        history_complete,
        signed_up_epoch,
        first_payment_epoch,
        window_ends_epoch,
        data_end_epoch,
        {{ epoch_to_timestamp('data_end_epoch') }} as data_end_at
    from windows
)

select * from final
