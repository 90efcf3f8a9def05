-- One row per Intercom contact (live or tombstone), the latest version of each.
with

source as (
    select * from {{ source('raw', 'intercom_contacts') }}
),

latest as (
    {{ ranked_versions('source') }}
),

{%- set fields = {
    'external_id': ['external_id'],
    'email': ['email'],
    'role': ['role'],
    'name': ['name'],
    'created_at': ['created_at'],
    'signed_up_at': ['signed_up_at'],
    'last_seen_at': ['last_seen_at'],
    'country': ['location', 'country'],
    'region': ['location', 'region'],
    'city': ['location', 'city'],
    'merged_into_id': ['merged_into_id'],
    'merged_into': ['merged_into', 'id'],
} %}

extracted as (
    select
        id,
        updated_at,
        is_deleted,
        deleted_reason,
        {{ json_values('payload', fields) }} as json_values
    from latest
    where version_rank = 1
),

parsed as (
    select
        id as contact_id,
        nullif(trim({{ json_value('json_values', fields, 'external_id') }}), '') as external_id,
        nullif(trim({{ json_value('json_values', fields, 'email') }}), '') as email,
        lower(trim({{ json_value('json_values', fields, 'email') }})) as email_normalized,
        coalesce({{ json_value('json_values', fields, 'role') }}, 'user') as role,
        {{ json_value('json_values', fields, 'name') }} as contact_name,
        {{ epoch_seconds(json_value('json_values', fields, 'created_at')) }} as created_epoch,
        {{ epoch_seconds(json_value('json_values', fields, 'signed_up_at')) }}
            as signed_up_epoch_raw,
        {{ epoch_seconds(json_value('json_values', fields, 'last_seen_at')) }}
            as last_seen_epoch,
        updated_at as updated_epoch,
        {{ json_value('json_values', fields, 'country') }} as country,
        {{ json_value('json_values', fields, 'region') }} as region,
        {{ json_value('json_values', fields, 'city') }} as city,
        -- Where a merged lead went: the ingestion records the surviving contact's id here.
        coalesce(
            {{ json_value('json_values', fields, 'merged_into_id') }},
            {{ json_value('json_values', fields, 'merged_into') }}
        ) as merged_into_contact_id,
        is_deleted,
        deleted_reason
    from extracted
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
