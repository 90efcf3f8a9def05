"""Jobs, schedules and freshness checks that run the whole pipeline unattended.

Selections are written as selection strings: they name assets of other stages by key and group
without importing them, and a stage that has not defined an asset yet leaves the job smaller
instead of breaking the definitions.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from orchestration.activation.sensors import LIVE_JOB_NAME

FULL_REFRESH_TAG = "nextbest/full_refresh"
"""Run tag asking the ingestion to re-read everything instead of reading incrementally."""

INTERCOM_WRITE_TAG = "nextbest/intercom-write"
"""Run tag of every job that writes to Intercom; the deployed instance runs these one by one."""

WRITES = {INTERCOM_WRITE_TAG: "true"}

PIPELINE = "group:ingest or group:transform or group:ml or group:activation"
TRAINING = 'key:"training_set" or key:"conversion_model"'

SCORED_MARTS = ("fct_user_features", "fct_conversion_labels", "fct_user_journeys", "dim_users")
"""The marts the scorer and the recommender read (`orchestration.models.assets.MART_KEYS`)."""

# The dbt models a live run rebuilds: those the scored marts are built from, and no others
# (`fct_sessions` and the reports of unresolved events feed no score).
MART_LINEAGE = "group:transform and +({})".format(
    " or ".join(f'key:"{name}"' for name in SCORED_MARTS)
)

RAW_KEYS = (
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


# Raw assets whose run config takes `full_refresh` (the ingestion's `IngestConfig`).
FULL_REFRESH_KEYS = tuple(key for key in RAW_KEYS if key != "raw/intercom_contact_companies")


def full_refresh_config() -> dict:
    """Run config that makes every ingestion asset ignore its incremental cursor."""
    ops = {key.replace("/", "__"): {"config": {"full_refresh": True}} for key in FULL_REFRESH_KEYS}
    return {"ops": ops}


def _select(text: str) -> dg.AssetSelection:
    return dg.AssetSelection.from_string(text)


def live_selection() -> dg.AssetSelection:
    """What a `live_update` run materializes.

    The ingestion, the dbt models the scored marts are built from, scoring, recommendations and
    the write-back. The dbt tests (asset checks of the models) are left out: a live run follows
    a few users' new events, and the hourly sync and the full refresh test the models; the
    model stage's own checks on the recommendations still run.
    """
    others = _select(f"(group:ingest or group:ml or group:activation) and not ({TRAINING})")
    return others | _select(MART_LINEAGE).without_checks()


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """`full_refresh`, `incremental_sync`, `retrain` and `live_update`."""
    return [
        dg.define_asset_job(
            "full_refresh",
            selection=_select(PIPELINE),
            config=full_refresh_config(),
            tags={FULL_REFRESH_TAG: "true", **WRITES},
            description="Re-read every source in full, rebuild the models, train, score and "
            "write back.",
        ),
        dg.define_asset_job(
            "incremental_sync",
            tags=WRITES,
            selection=_select(f"({PIPELINE}) and not ({TRAINING})"),
            description="Read what changed, rebuild the models, score with the champion model "
            "and write changed recommendations back.",
        ),
        dg.define_asset_job(
            "retrain",
            tags=WRITES,
            selection=_select(f"({TRAINING})+"),
            description="Train a challenger, promote it when it beats the champion, then "
            "re-score and write back.",
        ),
        dg.define_asset_job(
            LIVE_JOB_NAME,
            tags=WRITES,
            selection=live_selection(),
            description="Started by the sensor for a few contacts (run tag nextbest/contact_ids): "
            "their events, the dbt models the scored marts need (without tests), their scores "
            "and recommendations, and the write-back.",
        ),
    ]


def build_schedules() -> list[dg.ScheduleDefinition]:
    """Hourly incremental sync and weekly retrain, both stopped until switched on in the UI."""
    return [
        dg.ScheduleDefinition(
            name="hourly_incremental_sync",
            cron_schedule="5 * * * *",
            job_name="incremental_sync",
            default_status=dg.DefaultScheduleStatus.STOPPED,
            execution_timezone="UTC",
        ),
        dg.ScheduleDefinition(
            name="weekly_retrain",
            cron_schedule="30 3 * * 1",
            job_name="retrain",
            default_status=dg.DefaultScheduleStatus.STOPPED,
            execution_timezone="UTC",
        ),
    ]


def build_freshness_checks(max_age_hours: float) -> list[dg.AssetChecksDefinition]:
    """A last-update freshness check on every raw table, and the sensor that evaluates them."""
    checks = dg.build_last_update_freshness_checks(
        assets=[dg.AssetKey.from_user_string(key) for key in RAW_KEYS],
        lower_bound_delta=timedelta(hours=max_age_hours),
    )
    return list(checks)
