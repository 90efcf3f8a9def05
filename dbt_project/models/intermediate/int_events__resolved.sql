{{ config(materialized='view') }}
-- One row per loaded event with the app user it belongs to: through its Intercom contact
-- (merged leads included), else its external id, else an e-mail that exactly one live
-- contact has. Events that match no user keep a null user_id and a reason.
with

events as (
    select * from {{ ref('stg_intercom__events') }}
),

user_map as (
    select * from {{ ref('int_contacts__user_map') }}
),

users as (
    select user_id from {{ ref('int_users__identity') }}
),

contacts as (
    select * from {{ ref('stg_intercom__contacts') }}
),

unique_emails as (
    select
        contacts.email_normalized,
        min(user_map.user_id) as user_id
    from contacts
    inner join user_map on contacts.contact_id = user_map.contact_id
    where not contacts.is_deleted and contacts.email_normalized is not null
    group by contacts.email_normalized
    having count(*) = 1
),

-- Nearly every event carries its contact id, and only events without one are looked up by
-- external id or e-mail: resolved apart, the bulk pays for one join, not three.
by_contact_id as (
    select
        events.event_id,
        events.event_name,
        events.occurred_epoch,
        events.occurred_at,
        events.contact_id,
        events.external_id,
        events.load_source,
        user_map.user_id,
        case when user_map.user_id is null then 'contact_unknown' end as unresolved_reason
    from events
    left join user_map on events.contact_id = user_map.contact_id
    where events.contact_id is not null
),

without_contact_id as (
    select
        events.event_id,
        events.event_name,
        events.occurred_epoch,
        events.occurred_at,
        events.contact_id,
        events.external_id,
        events.load_source,
        coalesce(by_external_id.user_id, by_email.user_id) as user_id,
        case
            when by_external_id.user_id is not null then null
            when by_email.user_id is not null then null
            when events.external_id is not null then 'external_id_unknown'
            when events.email_normalized is not null then 'email_not_unique_or_unknown'
            else 'no_contact_key'
        end as unresolved_reason
    from events
    left join users as by_external_id on events.external_id = by_external_id.user_id
    left join unique_emails as by_email
        on
            events.external_id is null
            and events.email_normalized = by_email.email_normalized
    where events.contact_id is null
),

final as (
    select * from by_contact_id
    union all
    select * from without_contact_id
)

select * from final
