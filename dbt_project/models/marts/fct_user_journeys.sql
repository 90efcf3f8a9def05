-- Grain: one row per event of a known app user, in journey order, with its session.
with

events as (
    select * from {{ ref('int_events__sessionized') }}
),

final as (
    select
        event_id,
        user_id,
        event_name,
        occurred_at,
        session_id,
        session_number,
        step_number,
        seconds_since_signup,
        days_since_signup
    from events
)

select * from final
