-- One row per contact: from when its event history in the warehouse is complete.
with

source as (
    select * from {{ source('raw', 'intercom_event_coverage') }}
),

latest as (
    {{ ranked_versions('source', key='contact_id', newest_first='loaded_at desc') }}
),

final as (
    select
        contact_id,
        nullif(trim(external_id), '') as external_id,
        complete_from as complete_from_epoch,
        {{ epoch_to_timestamp('complete_from') }} as complete_from_at,
        {{ epoch_to_timestamp('last_read_at') }} as last_read_at
    from latest
    where version_rank = 1
)

select * from final
