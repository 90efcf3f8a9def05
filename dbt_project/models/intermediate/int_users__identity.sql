-- One row per app user: the Intercom contact that stands for it and the Stripe customers
-- linked to it (see int_customers__user_links for the rule).
with

contacts as (
    select * from {{ ref('stg_intercom__contacts') }}
),

user_map as (
    select * from {{ ref('int_contacts__user_map') }}
),

customer_links as (
    select * from {{ ref('int_customers__user_links') }}
),

own_contacts as (
    select
        user_map.user_id,
        contacts.*,
        -- One contact stands for the user: a live one before a tombstone, a user before a
        -- lead, the most recently updated first.
        row_number() over (
            partition by user_map.user_id
            order by
                contacts.is_deleted asc,
                case when contacts.role = 'user' then 0 else 1 end asc,
                contacts.updated_epoch desc,
                contacts.contact_id asc
        ) as contact_rank
    from user_map
    inner join contacts on user_map.contact_id = contacts.contact_id
    where not user_map.is_merged
),

merged_counts as (
    select
        user_id,
        count(*) as n_merged_contacts
    from user_map
    where is_merged
    group by user_id
),

customers as (
    select
        user_id,
        count(*) as n_stripe_customers,
        {{ dbt.listagg('customer_id', "','", 'order by customer_id') }} as stripe_customer_ids
    from customer_links
    group by user_id
),

final as (
    select
        own_contacts.user_id,
        own_contacts.contact_id,
        own_contacts.external_id,
        own_contacts.email,
        own_contacts.email_normalized,
        own_contacts.role,
        own_contacts.contact_name,
        -- Intercom's signed_up_at when set (and plausible), else when the contact was created.
        coalesce(own_contacts.signed_up_epoch, own_contacts.created_epoch) as signed_up_epoch,
        case
            when own_contacts.signed_up_epoch is not null then 'signed_up_at'
            when own_contacts.created_epoch is not null then 'created_at'
        end as signed_up_source,
        own_contacts.is_signed_up_at_milliseconds,
        own_contacts.country,
        own_contacts.region,
        own_contacts.city,
        own_contacts.is_deleted,
        own_contacts.deleted_reason,
        coalesce(merged_counts.n_merged_contacts, 0) as n_merged_contacts,
        coalesce(customers.n_stripe_customers, 0) as n_stripe_customers,
        customers.stripe_customer_ids
    from own_contacts
    left join merged_counts on own_contacts.user_id = merged_counts.user_id
    left join customers on own_contacts.user_id = customers.user_id
    where own_contacts.contact_rank = 1
)

select * from final
