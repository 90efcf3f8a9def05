-- One row per loaded event that belongs to no known app user, with the reason. These are
-- left out of the journeys; the count is checked by a warning test.
with

resolved as (
    select * from {{ ref('int_events__resolved') }}
),

final as (
    select
        event_id,
        event_name,
        occurred_at,
        contact_id,
        external_id,
        unresolved_reason
    from resolved
    where user_id is null
)

select * from final
