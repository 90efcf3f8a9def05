-- One row per app user who has paid: the first real payment. A real payment is a paid
-- invoice with an amount above zero, or a succeeded charge not fully refunded (a partial
-- refund still counts). $0 invoices (trials, 100% coupons) are not payments, and neither is
-- an invoice whose charge was fully refunded. A charge is fully refunded when Stripe says
-- `refunded`, or when its refunds (on the charge or in the refunds list) reach its amount.
-- A fully refunded charge also takes back the invoice it paid.
with

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
),

charges as (
    select * from {{ ref('stg_stripe__charges') }}
),

refunds as (
    select * from {{ ref('stg_stripe__refunds') }}
),

links as (
    select * from {{ ref('int_customers__user_links') }}
),

refunded_by_charge as (
    select
        charge_id,
        sum(amount_minor) as refunds_minor
    from refunds
    where coalesce(refund_status, 'succeeded') in ('succeeded', 'pending')
    group by charge_id
),

charge_refunds as (
    select
        charges.*,
        (
            charges.is_refunded_flag
            or (
                charges.amount_minor > 0
                and (
                    charges.amount_refunded_minor >= charges.amount_minor
                    or coalesce(refunded_by_charge.refunds_minor, 0) >= charges.amount_minor
                )
            )
        ) as is_fully_refunded
    from charges
    left join refunded_by_charge on charges.charge_id = refunded_by_charge.charge_id
),

-- The invoices a full refund took back. A charge names its invoice in older API versions;
-- since 2025-03-31 it does not, and the invoice's charge is the customer's charge of the same
-- amount and currency made within an hour of the invoice's payment.
refunded_invoices as (
    select distinct invoices.invoice_id
    from invoices
    inner join charge_refunds
        on
            invoices.invoice_id = charge_refunds.invoice_id
            or (
                charge_refunds.invoice_id is null
                and invoices.customer_id = charge_refunds.customer_id
                and invoices.currency = charge_refunds.currency
                and invoices.amount_paid_minor = charge_refunds.amount_minor
                and charge_refunds.created_epoch
                between invoices.paid_epoch - 3600 and invoices.paid_epoch + 3600
            )
    where charge_refunds.is_fully_refunded
),

payments as (
    select
        'invoice' as payment_source,
        invoices.invoice_id as payment_id,
        invoices.customer_id,
        invoices.paid_epoch,
        invoices.currency,
        invoices.amount_paid as amount
    from invoices
    left join refunded_invoices on invoices.invoice_id = refunded_invoices.invoice_id
    where
        invoices.invoice_status = 'paid'
        and invoices.amount_paid_minor > 0
        and refunded_invoices.invoice_id is null
    union all
    select
        'charge' as payment_source,
        charge_id as payment_id,
        customer_id,
        created_epoch as paid_epoch,
        currency,
        amount
    from charge_refunds
    where
        charge_status = 'succeeded'
        and amount_minor > 0
        and not is_fully_refunded
),

user_payments as (
    select
        payments.*,
        links.user_id,
        row_number() over (
            partition by links.user_id
            order by payments.paid_epoch, payments.payment_source, payments.payment_id
        ) as payment_rank,
        count(*) over (partition by links.user_id) as n_payments
    from payments
    inner join links on payments.customer_id = links.customer_id
    where payments.paid_epoch is not null
),

final as (
    select
        user_id,
        paid_epoch as first_payment_epoch,
        {{ epoch_to_timestamp('paid_epoch') }} as first_payment_at,
        payment_source,
        payment_id,
        customer_id,
        currency,
        amount,
        n_payments
    from user_payments
    where payment_rank = 1
)

select * from final
