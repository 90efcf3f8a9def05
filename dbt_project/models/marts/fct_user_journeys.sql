{{ config(materialized='view') }}
-- Grain: one row per event of a known app user, in journey order, with its session.
-- A view: the rows are int_events__sessionized's, and a copy of millions of them would cost
-- more than every reader's column pick together.
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
