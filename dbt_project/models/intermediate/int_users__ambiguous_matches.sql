-- One row per record whose identity could not be settled, with the reason; none is guessed.
-- Stripe customers: metadata naming an unknown user, an e-mail shared by several contacts,
-- or no e-mail match at all. Merged leads: no recorded target and no single live user with
-- their e-mail.
with

candidates as (
    select * from {{ ref('int_customers__candidates') }}
),

contacts as (
    select * from {{ ref('stg_intercom__contacts') }}
),

user_map as (
    select * from {{ ref('int_contacts__user_map') }}
),

customers as (
    select
        'stripe_customer' as record_type,
        customer_id as record_id,
        email_normalized,
        case
            when app_user_id is not null then 'app_user_id_not_found'
            when email_normalized is null then 'no_email'
            when n_email_contacts > 1 then 'email_matches_several_contacts'
            else 'email_matches_no_contact'
        end as reason,
        n_email_contacts as n_candidates,
        email_contact_ids as candidate_contact_ids
    from candidates
    where
        metadata_user_id is null
        and (app_user_id is not null or n_email_contacts != 1)
),

merged_leads as (
    select
        'merged_contact' as record_type,
        contacts.contact_id as record_id,
        contacts.email_normalized,
        'merge_target_unknown' as reason,
        0 as n_candidates,
        contacts.merged_into_contact_id as candidate_contact_ids
    from contacts
    left join user_map on contacts.contact_id = user_map.contact_id
    where contacts.deleted_reason = 'merged' and user_map.user_id is null
),

final as (
    select * from customers
    union all
    select * from merged_leads
)

select * from final
