-- One row per (contact, company) link.
with

source as (
    select * from {{ source('raw', 'intercom_contact_companies') }}
),

final as (
    select distinct
        contact_id,
        company_id
    from source
)

select * from final
