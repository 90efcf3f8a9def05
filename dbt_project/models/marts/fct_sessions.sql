-- Grain: one row per session (a run of a user's events with no silence longer than the
-- session gap between them).
with

events as (
    select * from {{ ref('int_events__sessionized') }}
),

-- A user's session number fixes its id: grouping on the short keys spares hashing and
-- comparing the 32-character ids of millions of events.
sessions as (
    select
        user_id,
        session_number,
        {{ dbt.any_value('session_id') }} as session_id,
        min(occurred_epoch) as started_epoch,
        max(occurred_epoch) as ended_epoch,
        count(*) as n_events
    from events
    group by user_id, session_number
),

final as (
    select
        session_id,
        user_id,
        session_number,
        {{ epoch_to_timestamp('started_epoch') }} as started_at,
        {{ epoch_to_timestamp('ended_epoch') }} as ended_at,
        ended_epoch - started_epoch as duration_seconds,
        n_events
    from sessions
)

select * from final
