-- One row per (contact, custom attribute) of the latest contact versions, with the value as
-- text and, for whole numbers that look like times, as a timestamp.
with

contacts as (
    select
        id as contact_id,
        payload,
        row_number() over (
            partition by id order by updated_at desc, loaded_at desc
        ) as version_rank
    from {{ source('raw', 'intercom_contacts') }}
),

attributes as (
    {{ json_object_entries('contacts', 'contact_id', 'payload', 'custom_attributes',
        'version_rank = 1') }}
),

typed as (
    select
        contact_id,
        attribute_name,
        attribute_value,
        {{ safe_number('attribute_value', dbt.type_numeric()) }} as numeric_value
    from attributes
),

final as (
    select
        contact_id,
        attribute_name,
        attribute_value,
        numeric_value,
        -- Unix seconds of 2001 onwards are above 10^9; above 10^11 they would be past the
        -- year 5000, so such a value is milliseconds written by another tool.
        coalesce(numeric_value > 100000000000, false) as is_probable_milliseconds,
        case
            when numeric_value between 1000000000 and 100000000000
                then {{ epoch_to_timestamp(dbt.safe_cast('numeric_value', dbt.type_bigint())) }}
        end as value_as_timestamp
    from typed
)

select * from final
