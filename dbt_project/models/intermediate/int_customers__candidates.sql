-- One row per Stripe customer with what its identity can be linked to: the user named by
-- `metadata.app_user_id`, and how many contacts share its trimmed, case-blind e-mail.
with

customers as (
    select * from {{ ref('stg_stripe__customers') }}
),

contacts as (
    select * from {{ ref('stg_intercom__contacts') }}
),

user_map as (
    select * from {{ ref('int_contacts__user_map') }}
),

known_users as (
    select distinct user_id from user_map
    where not is_merged
),

email_matches as (
    select
        contacts.email_normalized,
        count(*) as n_contacts,
        min(user_map.user_id) as user_id,
        {{ dbt.listagg('contacts.contact_id', "','", 'order by contacts.contact_id') }}
            as contact_ids
    from contacts
    inner join user_map on contacts.contact_id = user_map.contact_id
    where not contacts.is_deleted and contacts.email_normalized is not null
    group by contacts.email_normalized
),

final as (
    select
        customers.customer_id,
        customers.app_user_id,
        customers.email_normalized,
        customers.is_deleted,
        metadata_user.user_id as metadata_user_id,
        email_matches.user_id as email_user_id,
        email_matches.contact_ids as email_contact_ids,
        coalesce(email_matches.n_contacts, 0) as n_email_contacts
    from customers
    left join known_users as metadata_user on customers.app_user_id = metadata_user.user_id
    left join email_matches on customers.email_normalized = email_matches.email_normalized
)

select * from final
