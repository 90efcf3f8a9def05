{#- Every snapshot's last event must be at or before snapshot_at, and no event of the user
    at or before snapshot_at may be missing from its count: returns the snapshots that
    break either rule. Only whole-journey counts are compared, so it holds for any
    event names. -#}
{% test no_snapshot_sees_a_later_event(model) %}
    with

    snapshots as (
        select
            snapshot_id,
            user_id,
            snapshot_epoch,
            n_events,
            seconds_since_last_event
        from {{ model }}
    ),

    seen as (
        select
            snapshots.snapshot_id,
            count(events.event_id) as n_events_at_or_before
        from snapshots
        left join {{ ref('int_events__sessionized') }} as events
            on snapshots.user_id = events.user_id
                and events.occurred_epoch <= snapshots.snapshot_epoch
        group by snapshots.snapshot_id
    )

    select
        snapshots.snapshot_id,
        snapshots.n_events,
        seen.n_events_at_or_before
    from snapshots
    inner join seen on snapshots.snapshot_id = seen.snapshot_id
    where
        snapshots.n_events != seen.n_events_at_or_before
        or snapshots.seconds_since_last_event < 0
{% endtest %}
