"""The Dagster assets of the ingest group, materialized against the sandbox from settings."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration import ingest
from orchestration.resources import MissingCredentials, intercom_endpoint
from orchestration.settings import get_settings
from orchestration.warehouse import connect

KEYS = [
    "raw/intercom_contacts",
    "raw/intercom_companies",
    "raw/intercom_contact_companies",
    "raw/intercom_events",
    "raw/stripe_customers",
    "raw/stripe_subscriptions",
    "raw/stripe_invoices",
    "raw/stripe_charges",
    "raw/stripe_refunds",
]


def test_the_ingest_group_has_the_documented_keys_and_every_asset_a_description():
    definitions = ingest.defs()
    specs = {s.key.to_user_string(): s for s in definitions.resolve_all_asset_specs()}
    assert sorted(specs) == sorted(KEYS)
    for spec in specs.values():
        assert spec.group_name == "ingest"
        assert spec.description
        assert spec.owners


def test_no_credentials_and_no_sandbox_fails_with_a_clear_message(nextbest_home):
    with pytest.raises(MissingCredentials, match="INTERCOM_ACCESS_TOKEN is not set"):
        intercom_endpoint(get_settings())


def test_materializing_the_group_reads_the_sandbox_named_in_the_environment(
    harness_factory, nextbest_home, monkeypatch
):
    # A 30-day window puts some sign-ups before it; the readers are told the same window.
    monkeypatch.setenv("NEXTBEST_INGEST_EVENT_RETENTION_DAYS", "30")
    with harness_factory(event_window_days=30) as h:
        for name, value in h.sb.env().items():
            monkeypatch.setenv(name, value)
        definitions = ingest.defs()
        assets = list(definitions.assets or [])
        result = dg.materialize(assets, resources=ingest.resources())
        assert result.success
        metadata = {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert sorted(metadata) == sorted(KEYS)
        contacts = metadata["raw/intercom_contacts"]
        assert contacts["rows_inserted"].value == h.sb.store.live_count()
        for key in KEYS:
            for field in ("rows_read", "rows_quarantined", "requests", "responses_429", "seconds"):
                assert field in metadata[key], (key, field)
        window_start = h.sb.store.window_start()
        with connect(get_settings().warehouse, read_only=True) as con:
            stored = con.execute("select count(*) from raw.intercom_contacts").fetchall()[0][0]
            coverage = con.execute(
                """
                select (c.payload->>'created_at')::bigint, v.complete_from
                from raw.intercom_event_coverage as v
                join raw.intercom_contacts as c on c.id = v.contact_id
                """
            ).fetchall()
        assert stored == h.sb.store.live_count()
        # Coverage follows the sandbox's clock, not this machine's: a contact that signed up
        # before the window is complete only from the window's start (give or take the
        # seconds the read took).
        early = [(created, start) for created, start in coverage if created < window_start - 60]
        assert early, "some contacts signed up before the window"
        assert all(abs(start - window_start) < 60 for _, start in early)
        late = [(created, start) for created, start in coverage if created > window_start + 60]
        assert all(start == created for created, start in late)
