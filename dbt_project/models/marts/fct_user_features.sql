-- Grain: one row per snapshot (snapshot_id): a point where a recommendation would be made
-- for a user, holding only what was known then. Snapshots are taken at the end of each
-- session and at each day boundary since sign-up (sign-up itself, then every 24 hours),
-- from sign-up until the window closes, the data ends or the user first pays, whichever
-- comes first; the var `snapshot_after_every_event` adds one after every event too.
-- A snapshot sees the events at or before `snapshot_at` and nothing later. Company
-- attributes are the current ones (Intercom keeps no history of them).
{%- set window_days = whole_number_var('conversion_window_days', 1, 365) %}
{%- set actions = action_columns(ref('int_events__sessionized')) %}
with

labels as (
    select * from {{ ref('fct_conversion_labels') }}
),

users as (
    select * from {{ ref('dim_users') }}
),

events as (
    select
        user_id,
        event_name,
        occurred_epoch,
        step_number,
        session_number,
        active_day_number,
        seconds_since_signup
    from {{ ref('int_events__sessionized') }}
),

-- The state of the journey after each event: everything a snapshot taken then would see.
event_state as (
    select
        user_id,
        occurred_epoch,
        step_number,
        session_number,
        active_day_number,
        event_name as last_action,
        lag(event_name) over journey as previous_action,
        lead(session_number) over journey as next_session_number
    {%- for group in actions | batch(packed_slots() | int) %},
        {{ packed_running_count(group, 'journey') }} as packed_counts_{{ loop.index0 }}
    {%- endfor %}
    from events
    window journey as (
        partition by user_id order by step_number rows between unbounded preceding and current row
    )
),

bounds as (
    select
        user_id,
        signed_up_epoch,
        window_ends_epoch,
        data_end_epoch,
        first_payment_epoch,
        is_censored,
        history_complete
    from labels
),

-- A snapshot after an event is that event's row of event_state: no join needed.
session_ends as (
    select
        user_id,
        'session_end' as snapshot_kind,
        occurred_epoch as snapshot_epoch,
        step_number as last_step,
        occurred_epoch,
        step_number,
        session_number,
        active_day_number,
        last_action,
        previous_action
    {%- for group in actions | batch(packed_slots() | int) %},
        packed_counts_{{ loop.index0 }}
    {%- endfor %}
    from event_state
    where next_session_number is null or next_session_number != session_number
),

{%- if var('snapshot_after_every_event') %}

after_events as (
    select
        user_id,
        'after_event' as snapshot_kind,
        occurred_epoch as snapshot_epoch,
        step_number as last_step,
        occurred_epoch,
        step_number,
        session_number,
        active_day_number,
        last_action,
        previous_action
    {%- for group in actions | batch(packed_slots() | int) %},
        packed_counts_{{ loop.index0 }}
    {%- endfor %}
    from event_state
    where next_session_number = session_number
),
{%- endif %}

day_numbers as (
    {%- for day in range(window_days) %}
        select {{ day }} as day_number{% if not loop.last %}
            union all{% endif %}
    {%- endfor %}
),

-- The last step seen by each day boundary: an event `s` seconds after sign-up is seen from
-- boundary ceil(s / 86400) on (events before sign-up from boundary 0).
event_days as (
    select
        user_id,
        case
            when seconds_since_signup <= 0 then 0
            else
                cast(ceil(seconds_since_signup / {{ seconds_per_day() }}.0) as {{ dbt.type_int() }})
        end as boundary_day,
        max(step_number) as last_step
    from events
    where seconds_since_signup < {{ window_days }} * {{ seconds_per_day() }}
    group by user_id, boundary_day
),

day_boundary_steps as (
    select
        bounds.user_id,
        'day_boundary' as snapshot_kind,
        bounds.signed_up_epoch + day_numbers.day_number * {{ seconds_per_day() }}
            as snapshot_epoch,
        max(event_days.last_step) as last_step
    from bounds
    cross join day_numbers
    left join event_days
        on
            bounds.user_id = event_days.user_id
            and day_numbers.day_number >= event_days.boundary_day
    group by bounds.user_id, bounds.signed_up_epoch, day_numbers.day_number
),

-- A day boundary reads the state after the last event it sees (none: no event yet).
day_boundaries as (
    select
        day_boundary_steps.*,
        event_state.occurred_epoch,
        event_state.step_number,
        event_state.session_number,
        event_state.active_day_number,
        event_state.last_action,
        event_state.previous_action
    {%- for group in actions | batch(packed_slots() | int) %},
        event_state.packed_counts_{{ loop.index0 }}
    {%- endfor %}
    from day_boundary_steps
    left join event_state
        on
            day_boundary_steps.user_id = event_state.user_id
            and day_boundary_steps.last_step = event_state.step_number
),

all_snapshots as (
    select * from session_ends
    {%- if var('snapshot_after_every_event') %}
    union all
    select * from after_events
    {%- endif %}
    union all
    select * from day_boundaries
),

snapshots as (
    select
        all_snapshots.*,
        bounds.signed_up_epoch,
        bounds.window_ends_epoch,
        bounds.first_payment_epoch,
        bounds.is_censored,
        bounds.history_complete
    from all_snapshots
    inner join bounds on all_snapshots.user_id = bounds.user_id
    where
        all_snapshots.snapshot_epoch >= bounds.signed_up_epoch
        and all_snapshots.snapshot_epoch <= bounds.window_ends_epoch
        and all_snapshots.snapshot_epoch <= bounds.data_end_epoch
        and (
            bounds.first_payment_epoch is null
            or all_snapshots.snapshot_epoch < bounds.first_payment_epoch
        )
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'snapshots.user_id', "'|'", 'snapshots.snapshot_kind', "'|'",
            dbt.safe_cast('snapshots.snapshot_epoch', dbt.type_string()), "'|'",
            dbt.safe_cast('coalesce(snapshots.last_step, 0)', dbt.type_string())
        ])) }} as snapshot_id,
        snapshots.user_id,
        {{ epoch_to_timestamp('snapshots.snapshot_epoch') }} as snapshot_at,
        snapshots.snapshot_epoch,
        snapshots.snapshot_kind,
        snapshots.snapshot_epoch - snapshots.signed_up_epoch as seconds_since_signup,
        cast(
            floor(
                (snapshots.snapshot_epoch - snapshots.signed_up_epoch)
                / {{ seconds_per_day() }}.0
            )
            as {{ dbt.type_int() }}
        ) as days_since_signup,
        coalesce(snapshots.step_number, 0) as n_events,
        coalesce(snapshots.session_number, 0) as n_sessions,
        coalesce(snapshots.active_day_number, 0) as n_active_days,
        snapshots.snapshot_epoch - snapshots.occurred_epoch as seconds_since_last_event,
        coalesce(snapshots.step_number, 0) as step_number,
        snapshots.last_action,
        snapshots.previous_action,
        {%- for group in actions | batch(packed_slots() | int) %}
        {%- set packed = 'snapshots.packed_counts_' ~ loop.index0 %}
        {%- for name, column in group %}
        coalesce({{ unpack_count(packed, loop.index0) }}, 0) as {{ column }},
        {%- endfor %}
        {%- endfor %}
        users.company_id,
        users.company_plan,
        users.company_size,
        users.company_industry,
        users.company_monthly_spend,
        users.country,
        coalesce(
            snapshots.first_payment_epoch > snapshots.snapshot_epoch
            and snapshots.first_payment_epoch <= snapshots.window_ends_epoch,
            false
        ) as converted_within_window,
        snapshots.history_complete and not snapshots.is_censored as is_training,
        snapshots.history_complete
    from snapshots
    inner join users on snapshots.user_id = users.user_id
)

select * from final
