-- One row per Intercom contact: the app user it belongs to. A live (or deleted, archived)
-- contact is its own user: the external id when it has one, else its Intercom id. A merged
-- lead belongs to the contact it was merged into: the id the ingestion recorded, else the
-- only live contact with role user that shares its e-mail. Intercom answers a merged lead
-- with 404, so a lead tombstoned as `not_found` whose e-mail belongs to exactly one live
-- user counts as merged into that user too. A merged lead with no target is listed in
-- int_users__ambiguous_matches and belongs to nobody.
with

contacts as (
    select * from {{ ref('stg_intercom__contacts') }}
),

live_users_by_email as (
    select
        email_normalized,
        min(contact_id) as contact_id,
        count(*) as n_contacts
    from contacts
    where not is_deleted and role = 'user' and email_normalized is not null
    group by email_normalized
),

classified as (
    select
        contacts.*,
        coalesce(
            contacts.deleted_reason = 'merged'
            or (
                contacts.deleted_reason = 'not_found'
                and contacts.role = 'lead'
                and live_users_by_email.n_contacts = 1
            ),
            false
        ) as is_merged_lead
    from contacts
    left join live_users_by_email
        on
            contacts.email_normalized = live_users_by_email.email_normalized
            and live_users_by_email.n_contacts = 1
),

own_users as (
    select
        contact_id,
        email_normalized,
        role,
        is_deleted,
        coalesce(external_id, contact_id) as user_id
    from classified
    where not is_merged_lead
),

merged as (
    select
        classified.contact_id,
        classified.merged_into_contact_id,
        live_users_by_email.contact_id as email_target_contact_id
    from classified
    left join live_users_by_email
        on
            classified.email_normalized = live_users_by_email.email_normalized
            and live_users_by_email.n_contacts = 1
    where classified.is_merged_lead
),

merged_targets as (
    select
        merged.contact_id,
        coalesce(by_id.user_id, by_email.user_id) as user_id,
        case
            when by_id.user_id is not null then 'merged_into_id'
            when by_email.user_id is not null then 'merged_same_email'
        end as link_method
    from merged
    left join own_users as by_id
        on merged.merged_into_contact_id = by_id.contact_id
    left join own_users as by_email
        on merged.email_target_contact_id = by_email.contact_id
),

final as (
    select
        contact_id,
        user_id,
        'own' as link_method,
        false as is_merged
    from own_users
    union all
    select
        contact_id,
        user_id,
        link_method,
        true as is_merged
    from merged_targets
    where user_id is not null
)

select * from final
