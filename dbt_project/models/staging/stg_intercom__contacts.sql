-- One row per Intercom contact (live or tombstone), the latest version of each.
with

source as (
    select * from {{ source('raw', 'intercom_contacts') }}
),

latest as (
    select
        *,
        row_number() over (
            partition by id order by updated_at desc, loaded_at desc
        ) as version_rank
    from source
),

parsed as (
    select
        id as contact_id,
        nullif(trim({{ json_text('payload', ['external_id']) }}), '') as external_id,
        nullif(trim({{ json_text('payload', ['email']) }}), '') as email,
        lower(trim({{ json_text('payload', ['email']) }})) as email_normalized,
        coalesce({{ json_text('payload', ['role']) }}, 'user') as role,
        {{ json_text('payload', ['name']) }} as contact_name,
        {{ epoch_seconds(json_text('payload', ['created_at'])) }} as created_epoch,
        {{ epoch_seconds(json_text('payload', ['signed_up_at'])) }} as signed_up_epoch_raw,
        {{ epoch_seconds(json_text('payload', ['last_seen_at'])) }} as last_seen_epoch,
        updated_at as updated_epoch,
        {{ json_text('payload', ['location', 'country']) }} as country,
        {{ json_text('payload', ['location', 'region']) }} as region,
        {{ json_text('payload', ['location', 'city']) }} as city,
        -- Where a merged lead went: the ingestion records the surviving contact's id here.
        coalesce(
            {{ json_text('payload', ['merged_into_id']) }},
            {{ json_text('payload', ['merged_into', 'id']) }}
        ) as merged_into_contact_id,
        is_deleted,
        deleted_reason
    from latest
    where version_rank = 1
),

final as (
    select
        contact_id,
        external_id,
        email,
        nullif(email_normalized, '') as email_normalized,
        role,
        contact_name,
        -- A signed_up_at above 10^11 is almost surely milliseconds written by another tool:
        -- flagged and not used, never read as a date in the year 56000.
        signed_up_epoch_raw > 100000000000 as is_signed_up_at_milliseconds,
        -- Zero or negative: no sign-up recorded (some tools write -1 or 0 for "unset").
        case
            when signed_up_epoch_raw between 1 and 100000000000 then signed_up_epoch_raw
        end as signed_up_epoch,
        created_epoch,
        last_seen_epoch,
        updated_epoch,
        {{ epoch_to_timestamp('case when signed_up_epoch_raw between 1 and 100000000000'
            ~ ' then signed_up_epoch_raw end') }} as signed_up_at,
        {{ epoch_to_timestamp('created_epoch') }} as created_at,
        {{ epoch_to_timestamp('updated_epoch') }} as updated_at,
        country,
        region,
        city,
        merged_into_contact_id,
        is_deleted,
        deleted_reason
    from parsed
)

select * from final
