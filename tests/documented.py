"""Names the documentation promises, written out here so tests check the code against them."""

# The raw layer's asset keys, one per table of docs/warehouse.md, each loaded by its own
# ingestion asset.
RAW_ASSET_KEYS = (
    "raw/intercom_contacts",
    "raw/intercom_companies",
    "raw/intercom_contact_companies",
    "raw/intercom_events",
    "raw/stripe_customers",
    "raw/stripe_subscriptions",
    "raw/stripe_invoices",
    "raw/stripe_charges",
    "raw/stripe_refunds",
)
