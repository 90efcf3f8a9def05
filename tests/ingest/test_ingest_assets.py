"""The Dagster assets of the ingest group, materialized against the sandbox from settings."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration import ingest
from orchestration.resources import MissingCredentials, intercom_endpoint
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from sandbox.store import STRIPE_OBJECT
from tests.documented import RAW_ASSET_KEYS

DAY = 86_400


def test_the_ingest_group_has_the_documented_keys_and_every_asset_a_description():
    definitions = ingest.defs()
    specs = {s.key.to_user_string(): s for s in definitions.resolve_all_asset_specs()}
    assert sorted(specs) == sorted(RAW_ASSET_KEYS)
    for spec in specs.values():
        assert spec.group_name == "ingest"
        assert spec.description
        assert spec.owners


def test_no_credentials_and_no_sandbox_fails_with_a_clear_message(nextbest_home):
    with pytest.raises(MissingCredentials, match="INTERCOM_ACCESS_TOKEN is not set"):
        intercom_endpoint(get_settings())


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        e.asset_key.to_user_string(): {
            name: value.value
            for name, value in e.step_materialization_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def _first_sync_rows(store) -> dict[str, int]:
    """What a first sync must insert into each table, counted in the sandbox's store."""
    live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
    stripe = {kind: len(table.objects) for kind, table in store.stripe.items()}
    return {
        "raw/intercom_contacts": len(live),
        "raw/intercom_companies": len(store.companies),
        "raw/intercom_contact_companies": sum(int(store.contacts.company[i]) >= 0 for i in live),
        "raw/intercom_events": sum(len(store.contact_events(i)) for i in live),
        # Deleted customers are gone from the list a first sync reads.
        "raw/stripe_customers": stripe["customers"] - len(store.deleted_customers),
        "raw/stripe_subscriptions": stripe["subscriptions"],
        "raw/stripe_invoices": stripe["invoices"],
        "raw/stripe_charges": stripe["charges"],
        "raw/stripe_refunds": stripe["refunds"],
    }


def _reread_rows(store, lookback: int = 86_400, overlap: int = 3_600) -> dict[str, int]:
    """What a second sync with no change reads again (all unchanged), from the store.

    Contacts: those updated within the look-back before the newest change. Companies and
    links: all. Events: none (no contact changed). Stripe: objects created within the overlap
    before the newest one, and objects of events within the overlap before the newest event.
    """
    live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
    updated = [int(store.contacts.updated_at[i]) for i in live]
    rows = {
        "raw/intercom_contacts": sum(u > max(updated) - lookback for u in updated),
        "raw/intercom_companies": len(store.companies),
        "raw/intercom_contact_companies": sum(int(store.contacts.company[i]) >= 0 for i in live),
        "raw/intercom_events": 0,
    }
    events = [e for e in store.stripe["events"].objects if e["created"] >= store.now() - 30 * DAY]
    newest_event = max(e["created"] for e in events)
    for kind, object_type in STRIPE_OBJECT.items():
        if kind == "events":
            continue
        listed = [o for o in store.stripe[kind].objects if o["id"] not in store.deleted_customers]
        newest = max(o["created"] for o in listed)
        ids = {o["id"] for o in listed if o["created"] >= newest - overlap}
        for event in events:
            if event["created"] < newest_event - overlap or event["type"] == "customer.deleted":
                continue
            ref_kind, ref_id = event.get("_ref") or (None, None)
            obj = event.get("data", {}).get("object", {})
            if ref_kind == kind or obj.get("object") == object_type:
                ids.add(ref_id or obj["id"])
        rows[f"raw/stripe_{kind}"] = len(ids)
    return rows


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
        before = _first_sync_rows(h.sb.store)
        result = dg.materialize(assets, resources=ingest.resources())
        assert result.success
        # The event window moves with the clock: no event may have left it during the run.
        assert _first_sync_rows(h.sb.store) == before
        metadata = _metadata(result)
        assert sorted(metadata) == sorted(RAW_ASSET_KEYS)
        for key in RAW_ASSET_KEYS:
            for field in ("rows_read", "rows_quarantined", "requests", "responses_429", "seconds"):
                assert field in metadata[key], (key, field)
        # The sandbox answered no 429 and no 5xx, so nothing was retried.
        log = h.sb.state.request_log
        assert not [r for r in log if r["status"] == 429 or r["status"] >= 500]
        counts = ("rows_inserted", "rows_updated", "rows_unchanged", "retries")
        first = {key: tuple(metadata[key][c] for c in counts) for key in RAW_ASSET_KEYS}
        assert first == {key: (before[key], 0, 0, 0) for key in RAW_ASSET_KEYS}
        # Every Intercom request the assets sent named the API version.
        intercom = [r for r in log if r["vendor"] == "intercom"]
        assert intercom and {r["intercom_version"] for r in intercom} == {"2.14"}
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

        # A second run with nothing changed inserts and updates nothing.
        h.sb.admin.advance_clock(2)
        already = len(h.sb.state.request_log)
        again = dg.materialize(assets, resources=ingest.resources())
        assert again.success
        log = list(h.sb.state.request_log)[already:]
        assert not [r for r in log if r["status"] == 429 or r["status"] >= 500]
        metadata = _metadata(again)
        second = {key: tuple(metadata[key][c] for c in counts) for key in RAW_ASSET_KEYS}
        assert second == {key: (0, 0, rows, 0) for key, rows in _reread_rows(h.sb.store).items()}
