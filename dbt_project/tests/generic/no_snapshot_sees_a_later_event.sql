{#- A snapshot whose last step is s must come at or after event s and before event s + 1 of
    its user: it then counts exactly the events at or before snapshot_at. Returns the
    snapshots that break this. Steps are dense and in time order (int_events__sessionized),
    so two equality joins check it without comparing every pair of snapshot and event. -#}
{% test no_snapshot_sees_a_later_event(model) %}
    with

    snapshots as (
        select
            snapshot_id,
            user_id,
            snapshot_epoch,
            n_events
        from {{ model }}
    ),

    events as (
        select
            user_id,
            step_number,
            occurred_epoch
        from {{ ref('int_events__sessionized') }}
    )

    select
        snapshots.snapshot_id,
        snapshots.n_events,
        last_seen.occurred_epoch as last_seen_epoch,
        next_unseen.occurred_epoch as next_unseen_epoch
    from snapshots
    left join events as last_seen
        on
            snapshots.user_id = last_seen.user_id
            and snapshots.n_events = last_seen.step_number
    left join events as next_unseen
        on
            snapshots.user_id = next_unseen.user_id
            and snapshots.n_events + 1 = next_unseen.step_number
    where
        last_seen.occurred_epoch > snapshots.snapshot_epoch
        or (snapshots.n_events > 0 and last_seen.occurred_epoch is null)
        or next_unseen.occurred_epoch <= snapshots.snapshot_epoch
{% endtest %}
