-- One row per Intercom event as loaded (the key already folds Intercom's own duplicates of
-- contact, name and second), with the time as Unix seconds and as a UTC timestamp.
with

source as (
    select * from {{ source('raw', 'intercom_events') }}
),

final as (
    select
        id as event_id,
        intercom_event_id,
        nullif(trim(contact_id), '') as contact_id,
        nullif(trim(external_id), '') as external_id,
        nullif(lower(trim(email)), '') as email_normalized,
        event_name,
        created_at as occurred_epoch,
        {{ epoch_to_timestamp('created_at') }} as occurred_at,
        source as load_source
    from source
)

select * from final
