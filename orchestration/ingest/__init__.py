"""Ingestion: Intercom and Stripe into the DuckDB raw layer (asset group `ingest`).

The assets are thin: each opens the warehouse, calls one plain sync function of
`orchestration.ingest.intercom` or `orchestration.ingest.stripe`, closes the warehouse (DuckDB
takes one writer) and reports the numbers as metadata.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from orchestration.resources import IntercomResource, StripeResource

GROUP = "ingest"
OWNERS = ["team:ingestion"]


class IngestConfig(dg.Config):
    """Run configuration of the ingestion assets."""

    full_refresh: bool = False
    """Ignore the incremental cursors and re-read everything (as NEXTBEST_INGEST_FULL_REFRESH)."""


def _settings(config: IngestConfig) -> Any:
    from orchestration.ingest.settings import IngestSettings

    settings = IngestSettings()
    if config.full_refresh:
        settings = settings.model_copy(update={"full_refresh": True})
    return settings


def _materialize(context: dg.AssetExecutionContext, run: Callable[[Any], Any]) -> Any:
    from orchestration.settings import get_settings
    from orchestration.warehouse import warehouse

    with warehouse(get_settings().warehouse) as con:
        report = run(con)
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata=report.metadata())


def _intercom_assets() -> list[dg.AssetsDefinition]:
    from orchestration.ingest import intercom as sync

    @dg.asset(
        key=["raw", "intercom_contacts"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "intercom"},
        description="Intercom contacts (users and leads), whole JSON beside id and updated_at; "
        "merged, deleted or archived ones kept as tombstones. Incremental by updated_at.",
    )
    def intercom_contacts(
        context: dg.AssetExecutionContext, config: IngestConfig, intercom: IntercomResource
    ) -> dg.MaterializeResult:
        settings = _settings(config)
        with intercom.client() as client:
            return _materialize(
                context,
                lambda con: sync.sync_contacts(
                    client, con, sync_id=context.run_id, settings=settings
                ),
            )

    @dg.asset(
        key=["raw", "intercom_companies"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "intercom"},
        description="Intercom companies read through the scroll, restarted whole on expiry.",
    )
    def intercom_companies(
        context: dg.AssetExecutionContext, config: IngestConfig, intercom: IntercomResource
    ) -> dg.MaterializeResult:
        settings = _settings(config)
        with intercom.client() as client:
            return _materialize(
                context,
                lambda con: sync.sync_companies(
                    client, con, sync_id=context.run_id, settings=settings
                ),
            )

    @dg.asset(
        key=["raw", "intercom_contact_companies"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "intercom"},
        deps=[dg.AssetKey(["raw", "intercom_contacts"])],
        description="Which company each contact belongs to, from the contacts' payloads.",
    )
    def intercom_contact_companies(
        context: dg.AssetExecutionContext, intercom: IntercomResource
    ) -> dg.MaterializeResult:
        with intercom.client() as client:
            return _materialize(
                context,
                lambda con: sync.sync_contact_companies(client, con, sync_id=context.run_id),
            )

    @dg.asset(
        key=["raw", "intercom_events"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "intercom"},
        deps=[dg.AssetKey(["raw", "intercom_contacts"])],
        description="Intercom events of every contact changed since its last read, read "
        "concurrently; with intercom_event_coverage, from when each history is complete.",
    )
    def intercom_events(
        context: dg.AssetExecutionContext, config: IngestConfig, intercom: IntercomResource
    ) -> dg.MaterializeResult:
        settings = _settings(config)
        client = intercom.async_client(max_connections=settings.event_concurrency)
        return _materialize(
            context,
            lambda con: sync.sync_events(
                client, con, sync_id=context.run_id, settings=settings, progress=context.log.info
            ),
        )

    return [intercom_contacts, intercom_companies, intercom_contact_companies, intercom_events]


def _stripe_asset(table: str, description: str) -> dg.AssetsDefinition:
    from orchestration.ingest import stripe as sync

    @dg.asset(
        key=["raw", table],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "stripe"},
        description=description,
    )
    def stripe_stream(
        context: dg.AssetExecutionContext, config: IngestConfig, stripe: StripeResource
    ) -> dg.MaterializeResult:
        settings = _settings(config)
        client = stripe.client()
        return _materialize(
            context,
            lambda con: sync.sync_stripe_stream(
                client, con, table, sync_id=context.run_id, settings=settings
            ),
        )

    return stripe_stream


STRIPE_DESCRIPTIONS = {
    "stripe_customers": "Stripe customers; deleted ones kept as tombstones so invoices join.",
    "stripe_subscriptions": "Stripe subscriptions of every status (listed with status=all).",
    "stripe_invoices": "Stripe invoices, changes applied from /v1/events.",
    "stripe_charges": "Stripe charges, changes applied from /v1/events.",
    "stripe_refunds": "Stripe refunds from /v1/refunds (charges do not embed them).",
}


def assets() -> list[dg.AssetsDefinition]:
    """Every ingestion asset."""
    stripe_assets = [_stripe_asset(t, d) for t, d in STRIPE_DESCRIPTIONS.items()]
    return _intercom_assets() + stripe_assets


def resources() -> dict[str, Any]:
    """The resources the ingestion assets need, by key."""
    return {"intercom": IntercomResource(), "stripe": StripeResource()}


def defs() -> dg.Definitions:
    """Definitions of the ingestion stage."""
    return dg.Definitions(assets=assets(), resources=resources())
