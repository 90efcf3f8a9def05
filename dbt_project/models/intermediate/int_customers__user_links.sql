-- One row per Stripe customer linked to an app user. The rule: `metadata.app_user_id` names
-- the user (its external id) first; a customer without that metadata links by trimmed,
-- case-blind e-mail only when exactly one live contact has that e-mail. A user with several
-- customers keeps them all; a customer linked by e-mail beside one linked by metadata is
-- flagged as a probable duplicate. Everything else is in int_users__ambiguous_matches.
with

candidates as (
    select * from {{ ref('int_customers__candidates') }}
),

linked as (
    select
        customer_id,
        is_deleted,
        coalesce(
            metadata_user_id,
            case when app_user_id is null and n_email_contacts = 1 then email_user_id end
        ) as user_id,
        case when metadata_user_id is not null then 'metadata' else 'email' end as link_method
    from candidates
),

final as (
    select
        customer_id,
        user_id,
        link_method,
        is_deleted,
        link_method = 'email' and max(
            case when link_method = 'metadata' then 1 else 0 end
        ) over (partition by user_id) = 1 as is_probable_duplicate
    from linked
    where user_id is not null
)

select * from final
