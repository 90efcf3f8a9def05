-- Grain: one row per app user (the external id when the contact has one, else the Intercom
-- contact id), with the company it belongs to and whether its journey is completely known.
with

identity as (
    select * from {{ ref('int_users__identity') }}
),

contact_companies as (
    select * from {{ ref('stg_intercom__contact_companies') }}
),

companies as (
    select * from {{ ref('stg_intercom__companies') }}
),

coverage as (
    select * from {{ ref('stg_intercom__event_coverage') }}
),

first_events as (
    select
        user_id,
        min(occurred_epoch) as first_event_epoch
    from {{ ref('int_events__sessionized') }}
    group by user_id
),

-- A contact in several companies is shown with the one of lowest id; n_companies says so.
user_companies as (
    select
        contact_companies.contact_id,
        companies.company_id,
        companies.company_name,
        companies.company_plan,
        companies.company_size,
        companies.company_industry,
        companies.company_monthly_spend,
        count(*) over (partition by contact_companies.contact_id) as n_companies,
        row_number() over (
            partition by contact_companies.contact_id order by companies.company_id
        ) as company_rank
    from contact_companies
    inner join companies on contact_companies.company_id = companies.company_id
),

-- Coverage is recorded per contact; an import keyed by external id may record it that way.
-- Two equality joins, not one join on an `or`, which no engine can hash.
user_coverage as (
    select
        user_id,
        min(complete_from_epoch) as complete_from_epoch
    from (
        select
            identity.user_id,
            coverage.complete_from_epoch
        from identity
        inner join coverage on identity.contact_id = coverage.contact_id
        union all
        select
            identity.user_id,
            coverage.complete_from_epoch
        from identity
        inner join coverage on identity.external_id = coverage.external_id
    ) as matches
    group by user_id
),

final as (
    select
        identity.user_id,
        identity.contact_id,
        identity.external_id,
        identity.email,
        identity.role,
        identity.contact_name,
        coalesce(identity.signed_up_epoch, first_events.first_event_epoch) as signed_up_epoch,
        {{ epoch_to_timestamp('coalesce(identity.signed_up_epoch,'
            ~ ' first_events.first_event_epoch)') }} as signed_up_at,
        coalesce(identity.signed_up_source, 'first_event') as signed_up_source,
        identity.is_signed_up_at_milliseconds,
        identity.country,
        identity.region,
        identity.city,
        user_companies.company_id,
        user_companies.company_name,
        user_companies.company_plan,
        user_companies.company_size,
        user_companies.company_industry,
        user_companies.company_monthly_spend,
        coalesce(user_companies.n_companies, 0) as n_companies,
        identity.stripe_customer_ids,
        identity.n_stripe_customers,
        identity.n_merged_contacts,
        identity.is_deleted,
        {{ epoch_to_timestamp('user_coverage.complete_from_epoch') }} as history_complete_from,
        -- Complete when the warehouse holds every event since sign-up; with no coverage
        -- record nothing says so, and the journey counts as incomplete.
        coalesce(
            user_coverage.complete_from_epoch
            <= coalesce(identity.signed_up_epoch, first_events.first_event_epoch),
            false
        ) as history_complete
    from identity
    left join first_events on identity.user_id = first_events.user_id
    left join user_companies
        on
            identity.contact_id = user_companies.contact_id
            and user_companies.company_rank = 1
    left join user_coverage on identity.user_id = user_coverage.user_id
)

select * from final
