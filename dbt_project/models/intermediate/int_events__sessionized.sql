-- One row per event of a known app user, in journey order: the session it belongs to, its
-- step in the journey and its time since sign-up.
--
-- A session ends after more than `session_gap_minutes` of silence: an event exactly the
-- threshold after the previous one stays in the same session; one second more starts a new
-- one. Session ids are the md5 of the user id and the session's first second, so a rebuild
-- gives the same ids. The same (user, event name, second) loaded twice (once by contact id
-- from the API, once by external id from an import) is one event.
{%- set gap_minutes = whole_number_var('session_gap_minutes', 1, 525600) %}
with

events as (
    select * from {{ ref('int_events__resolved') }}
    where user_id is not null
),

users as (
    select
        user_id,
        signed_up_epoch
    from {{ ref('int_users__identity') }}
),

distinct_events as (
    select
        user_id,
        event_name,
        occurred_epoch,
        min(event_id) as event_id
    from events
    group by user_id, event_name, occurred_epoch
),

ordered as (
    select
        distinct_events.*,
        users.signed_up_epoch,
        row_number() over journey as step_number,
        distinct_events.occurred_epoch
        - lag(distinct_events.occurred_epoch) over journey as seconds_since_previous
    from distinct_events
    inner join users on distinct_events.user_id = users.user_id
    window journey as (
        partition by distinct_events.user_id
        order by distinct_events.occurred_epoch, distinct_events.event_id
    )
),

flagged as (
    select
        *,
        case
            when seconds_since_previous is null then 1
            when seconds_since_previous > {{ gap_minutes }} * 60 then 1
            else 0
        end as is_session_start,
        -- The first event of a day since sign-up (day 0 starts at sign-up).
        case
            when seconds_since_previous is null then 1
            when
                floor((occurred_epoch - signed_up_epoch) / {{ seconds_per_day() }}.0)
                > floor(
                    (occurred_epoch - seconds_since_previous - signed_up_epoch)
                    / {{ seconds_per_day() }}.0
                ) then 1
            else 0
        end as is_new_active_day
    from ordered
),

numbered as (
    select
        *,
        sum(is_session_start) over journey as session_number,
        max(case when is_session_start = 1 then occurred_epoch end) over journey
            as session_start_epoch,
        sum(is_new_active_day) over journey as active_day_number
    from flagged
    window journey as (
        partition by user_id order by step_number rows between unbounded preceding and current row
    )
),

final as (
    select
        event_id,
        user_id,
        event_name,
        occurred_epoch,
        {{ epoch_to_timestamp('occurred_epoch') }} as occurred_at,
        {{ dbt.hash(dbt.concat(['user_id', "'|'",
            dbt.safe_cast('session_start_epoch', dbt.type_string())])) }} as session_id,
        cast(session_number as {{ dbt.type_int() }}) as session_number,
        session_start_epoch,
        is_session_start = 1 as is_session_start,
        cast(step_number as {{ dbt.type_int() }}) as step_number,
        cast(active_day_number as {{ dbt.type_int() }}) as active_day_number,
        signed_up_epoch,
        occurred_epoch - signed_up_epoch as seconds_since_signup,
        cast(
            floor((occurred_epoch - signed_up_epoch) / {{ seconds_per_day() }}.0)
            as {{ dbt.type_int() }}
        ) as days_since_signup
    from numbered
)

select * from final
