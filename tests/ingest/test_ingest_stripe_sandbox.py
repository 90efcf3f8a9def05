"""Stripe reads against the sandbox (real HTTP through the stripe SDK): failure modes 14-23."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx
import pytest
import stripe

from orchestration import ingest
from orchestration.ingest import stripe as sync
from orchestration.settings import get_settings
from orchestration.warehouse import connect, ensure_raw_tables
from tests.ingest.conftest import Harness, table_rows

KINDS = {
    "stripe_customers": "customers",
    "stripe_subscriptions": "subscriptions",
    "stripe_invoices": "invoices",
    "stripe_charges": "charges",
    "stripe_refunds": "refunds",
}


def _served(h, table: str) -> dict[str, dict]:
    """Every object of a table as the sandbox renders it; deleted customers as they were."""
    store = h.sb.store
    kind = KINDS[table]
    return {
        obj["id"]: json.loads(json.dumps(store.stripe_render(kind, obj)))
        for obj in store.stripe[kind].objects
        if obj["id"] not in store.removed
    }


def _stored(h, table: str) -> dict[str, tuple[dict, bool, str | None]]:
    rows = h.con.execute(f"select id, payload, is_deleted, deleted_reason from raw.{table}")
    return {r[0]: (json.loads(r[1]), r[2], r[3]) for r in rows.fetchall()}


def _cursors(h) -> dict[str, str]:
    return dict(h.con.execute("select stream, cursor from raw.sync_state").fetchall())


def _another_warehouse(h, tmp_path: Path) -> Harness:
    """A second, empty warehouse reading the same sandbox."""
    path = tmp_path / "uninterrupted.duckdb"
    con = connect(path)
    ensure_raw_tables(con)
    return Harness(h.sb, con, h.settings, path)


def test_every_stripe_object_lands_whole_as_served(harness_factory):
    # 16 (status=all), 18 (refunds from /v1/refunds), 19 (JPY), 20 ($0 invoices),
    # 21 (parent.subscription_details), 22 (customers with and without metadata).
    with harness_factory() as h:
        reports = h.sync_stripe("s1")
        for table in KINDS:
            served, stored = _served(h, table), _stored(h, table)
            assert sorted(stored) == sorted(served), table
            assert all(stored[k][0] == served[k] for k in served), table
            # 17: customers deleted before the first read come from the events feed, flagged.
            deleted = h.sb.store.deleted_customers if table == "stripe_customers" else set()
            assert {k for k, (_, gone, _) in stored.items() if gone} == deleted, table
            assert reports[table].counts.inserted == len(served) - len(deleted)
            assert reports[table].counts.tombstoned == len(deleted)
        charges = [p for p, _, _ in _stored(h, "stripe_charges").values()]
        assert any(c["currency"] == "jpy" for c in charges)
        assert any(c["refunded"] for c in charges)
        invoices = [p for p, _, _ in _stored(h, "stripe_invoices").values()]
        assert any(i["amount_paid"] == 0 and i["status"] == "paid" for i in invoices)
        assert all(
            i["parent"]["subscription_details"]["subscription"].startswith("sub_")
            for i in invoices
            if i.get("parent")
        )
        assert len(_stored(h, "stripe_refunds")) == len(h.sb.store.stripe["refunds"].objects)


def test_changes_after_the_first_sync_arrive_through_the_events_feed(harness_factory):
    # 14: a trialing subscription becomes active; a list by `created` would not see it.
    # 16: a canceled one stays listed. 17: a deleted customer is kept, flagged deleted.
    with harness_factory() as h:
        store = h.sb.store
        trialing = next(
            s["id"] for s in store.stripe["subscriptions"].objects if s["status"] == "trialing"
        )
        active = next(s for s in store.stripe["subscriptions"].objects if s["status"] == "active")
        customer = next(
            c["id"]
            for c in store.stripe["customers"].objects
            if c["id"] not in store.deleted_customers
        )
        h.sync_stripe("s1")
        h.sb.admin.set_subscription_status(trialing, "active")
        h.sb.admin.set_subscription_status(active["id"], "canceled")
        h.sb.admin.delete_customer(customer)
        h.sb.admin.advance_clock(2)
        reports = h.sync_stripe("s2")
        assert reports["stripe_subscriptions"].notes["mode"] == "incremental"
        assert reports["stripe_subscriptions"].notes["events_applied"] == 2
        subs = _stored(h, "stripe_subscriptions")
        assert subs[trialing][0]["status"] == "active"
        assert subs[active["id"]][0]["status"] == "canceled"
        assert subs[active["id"]][1] is False  # canceled is a status, not a deletion
        payload, deleted, reason = _stored(h, "stripe_customers")[customer]
        assert (deleted, reason) == (True, "deleted")
        assert payload["id"] == customer and "email" in payload  # the old payload is kept
        assert reports["stripe_customers"].counts.tombstoned == 1
        # Nothing else changed: a third sync writes no row.
        third = h.sync_stripe("s3")
        assert sum(r.counts.written for r in third.values()) == 0
        for table in KINDS:
            assert h.count(f"select count(*) from raw.{table} where sync_id = 's3'") == 0


def test_an_events_cursor_older_than_thirty_days_forces_a_full_re_list(harness_factory):
    # 15: never clamp to the last 30 days and call it complete.
    with harness_factory() as h:
        h.sync_stripe("s1")
        subscription = h.sb.store.stripe["subscriptions"].objects[0]["id"]
        h.sb.admin.set_subscription_status(subscription, "past_due")
        h.sb.admin.advance_clock(39 * 86_400)
        reports = h.sync_stripe("s2")
        for table in KINDS:
            assert reports[table].notes["mode"].startswith("full"), table
            assert sorted(_stored(h, table)) == sorted(_served(h, table))
        assert _stored(h, "stripe_subscriptions")[subscription][0]["status"] == "past_due"


def test_retryable_stripe_answers_are_retried_honouring_retry_after(harness_factory):
    # 23: 429 lock_timeout, 429 rate_limit with Retry-After 2, 500 api_error, then 200.
    with harness_factory() as h:
        h.sb.admin.set_faults("stripe_retry_classes")
        report = sync.sync_stripe_stream(
            h.stripe(), h.con, "stripe_customers", sync_id="s1", settings=h.settings
        )
        assert sorted(_stored(h, "stripe_customers")) == sorted(_served(h, "stripe_customers"))
        ok = report.client["status_200"]
        assert report.client["status_429"] == 2 * ok
        assert report.client["status_500"] == ok
        assert report.client["retries"] == 3 * ok
        assert report.client["seconds_waited"] >= 2 * ok  # Retry-After: 2, each time


def test_a_stripe_request_that_cannot_succeed_fails_at_once(harness_factory):
    with harness_factory() as h:
        client = h.stripe()
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.list(params={"limit": 1000})
        assert caught.value.http_status == 400
        assert "limit" in str(caught.value)
        assert client.retrying_http.stats.requests == 1


def test_invoices_in_the_shape_before_2025_03_31_land_whole(harness_factory):
    # 21: the dirt serves some invoices as older API versions did: the subscription at the top
    # level beside `paid` and `charge`, no `parent`. They land as served, not reshaped.
    with harness_factory() as h:
        legacy = {d["id"] for d in h.sb.admin.dirt() if d["kind"] == "legacy_invoice"}
        invoices = h.sb.store.stripe["invoices"].objects
        assert len(legacy) == max(1, round(len(invoices) * 0.05))
        h.sync_stripe("s1")
        stored, served = _stored(h, "stripe_invoices"), _served(h, "stripe_invoices")
        assert sorted(stored) == sorted(served)
        # Each customer has one subscription: the store says which one every invoice belongs to.
        subscription_of = {
            s["customer"]: s["id"] for s in h.sb.store.stripe["subscriptions"].objects
        }
        for invoice in invoices:
            payload = stored[invoice["id"]][0]
            assert payload == served[invoice["id"]]
            expected = subscription_of[invoice["customer"]]
            if invoice["id"] in legacy:
                assert "parent" not in payload
                assert (payload["subscription"], payload["paid"]) == (expected, True)
            else:
                assert "subscription" not in payload and "paid" not in payload
                assert payload["parent"]["subscription_details"]["subscription"] == expected


def test_a_5xx_storm_past_the_retry_budget_fails_loudly_and_the_next_sync_catches_up(
    harness_factory, tmp_path
):
    # Interrupted twice: mid-way through the first full list of invoices (page 2 of 3), and at
    # the incremental list of the next sync. Each time the error names the stream and the
    # request, nothing of the stream is stored, and its cursor stays where it was.
    with harness_factory(users=1000) as a:
        b = _another_warehouse(a, tmp_path)
        store = a.sb.store
        assert len(store.stripe["invoices"].objects) > 2 * sync.PAGE_SIZE
        attempts = 6  # make_stripe_client's default budget, the first attempt included
        try:
            a.sb.admin.set_faults(
                "stripe_5xx_storm", stripe_storm_path="/v1/invoices", stripe_storm_after=1
            )
            with pytest.raises(sync.StripeSyncError) as first:
                a.sync_stripe("s1")
            a.sb.admin.set_faults(None)
            failed = [r for r in a.sb.admin.stripe_requests() if r["status"] == 500]
            assert len(failed) == attempts
            ((path, query),) = {(r["path"], r["query"]) for r in failed}
            # Page 2 starts after the 100th newest invoice (the store holds them oldest first).
            page_one_last = store.stripe["invoices"].objects[-sync.PAGE_SIZE]["id"]
            assert (path, query) == ("/v1/invoices", f"limit=100&starting_after={page_one_last}")
            message = str(first.value)
            assert message.startswith(f"stripe_invoices: GET {a.sb.stripe_url}{path}?{query} ")
            assert f"(HTTP 500, attempt {attempts})" in message and "api_error" in message
            assert "stripe_invoices" not in _cursors(a)
            assert a.count("select count(*) from raw.stripe_invoices") == 0
            a.sync_stripe("s1b")
            b.sync_stripe("s1")
            trialing = next(
                s["id"] for s in store.stripe["subscriptions"].objects if s["status"] == "trialing"
            )
            a.sb.admin.set_subscription_status(trialing, "active")
            a.sb.admin.advance_clock(2)
            cursors, invoices = _cursors(a), _stored(a, "stripe_invoices")
            seen = len(a.sb.admin.stripe_requests())
            a.sb.admin.set_faults("stripe_5xx_storm", stripe_storm_path="/v1/invoices")
            with pytest.raises(sync.StripeSyncError) as second:
                a.sync_stripe("s2")
            a.sb.admin.set_faults(None)
            failed = [r for r in a.sb.admin.stripe_requests()[seen:] if r["status"] == 500]
            ((path, query),) = {(r["path"], r["query"]) for r in failed}
            # The list restarts from the newest invoice, less the default hour of overlap.
            newest = max(o["created"] for o in store.stripe["invoices"].objects)
            assert len(failed) == attempts and query == f"limit=100&created[gte]={newest - 3600}"
            assert str(second.value).startswith(f"stripe_invoices: GET {a.sb.stripe_url}{path}?")
            # The streams read before the storm committed; the one it hit did not move.
            after = _cursors(a)
            assert after["stripe_invoices"] == cursors["stripe_invoices"]
            assert _stored(a, "stripe_invoices") == invoices
            assert _stored(a, "stripe_subscriptions")[trialing][0]["status"] == "active"
            a.sync_stripe("s3")
            b.sync_stripe("s2")
            for table in KINDS:
                assert _stored(a, table) == _stored(b, table), table
                served = _served(a, table)
                assert {k: v[0] for k, v in _stored(a, table).items()} == served, table
        finally:
            b.con.close()


def test_a_second_stripe_sync_with_no_change_writes_no_row(harness_factory):
    # 1,000 users: 240 customers, three pages a stream, and a month of events.
    with harness_factory(users=1000) as h:
        store = h.sb.store
        assert len(store.stripe["customers"].objects) > 2 * sync.PAGE_SIZE
        h.sync_stripe("s1")
        columns = "id, payload, is_deleted, deleted_reason, updated_at, sync_id, loaded_at"
        before = {t: table_rows(h.con, t, columns) for t in KINDS}
        reports = h.sync_stripe("s2")
        events = [store.stripe_render("events", e) for e in store.stripe["events"].objects]
        newest_event = max(e["created"] for e in events)
        for table, kind in KINDS.items():
            assert table_rows(h.con, table, columns) == before[table], table
            assert h.count(f"select count(*) from raw.{table} where sync_id = 's2'") == 0
            stored = _stored(h, table)
            assert {k: v[0] for k, v in stored.items()} == _served(h, table), table
            counts = reports[table].counts
            assert (counts.inserted, counts.updated, counts.tombstoned) == (0, 0, 0), table
            # What the second sync re-read, from the store: objects created in the hour before
            # the newest one, and the events of the hour before the newest event.
            objects = store.stripe[kind].objects
            newest = max(o["created"] for o in objects)
            relisted = [
                o
                for o in objects
                if o["created"] >= newest - 3600 and o["id"] not in store.deleted_customers
            ]
            changed = [
                e
                for e in events
                if e["created"] >= newest_event - 3600
                and e["data"]["object"]["object"] == sync.STRIPE_STREAMS[table].object_type
                and e["type"] != "customer.deleted"
            ]
            assert counts.read == len(relisted) + len(changed) > 0, table
            ids = {o["id"] for o in relisted} | {e["data"]["object"]["id"] for e in changed}
            assert counts.unchanged == len(ids), table
        assert h.count("select count(*) from raw.quarantine") == 0


def test_vanished_and_deleted_stripe_objects_are_kept_as_tombstones(harness_factory):
    # 17: customers deleted before the first sync are in no list; the `customer.deleted` events
    # keep them, with the customer as it was, so their invoices still join. Objects gone
    # altogether (404) on a full re-list keep their last payload, flagged `not_found`.
    with harness_factory() as h:
        store = h.sb.store
        deleted_before = set(store.deleted_customers)
        assert deleted_before
        h.sync_stripe("s1")
        customers = _stored(h, "stripe_customers")
        for customer_id in deleted_before:
            payload, deleted, reason = customers[customer_id]
            assert (deleted, reason) == (True, "deleted")
            assert payload == _served(h, "stripe_customers")[customer_id]
        billed = {i["customer"] for i in store.stripe["invoices"].objects}
        assert deleted_before <= billed <= set(customers)
        invoice = store.stripe["invoices"].objects[0]["id"]
        charge = store.stripe["charges"].objects[-1]["id"]
        customer = next(
            c["id"] for c in store.stripe["customers"].objects if c["id"] not in deleted_before
        )
        before = {table: _stored(h, table) for table in KINDS}
        h.sb.admin.remove_stripe_object("invoices", invoice)
        h.sb.admin.remove_stripe_object("charges", charge)
        h.sb.admin.delete_customer(customer)
        with pytest.raises(stripe.InvalidRequestError) as missing:
            h.stripe().v1.invoices.retrieve(invoice)
        assert missing.value.http_status == 404
        reports = h.sync_stripe("s2", full_refresh=True)
        expected = {
            ("stripe_invoices", invoice): "not_found",
            ("stripe_charges", charge): "not_found",
            ("stripe_customers", customer): "deleted",
        }
        for table in KINDS:
            after = _stored(h, table)
            assert sorted(after) == sorted(before[table]), table
            for key, (payload, deleted, reason) in after.items():
                old_payload, was_deleted, old_reason = before[table][key]
                assert payload == old_payload, (table, key)
                if (table, key) in expected:
                    assert (was_deleted, deleted, reason) == (False, True, expected[table, key])
                else:
                    assert (deleted, reason) == (was_deleted, old_reason), (table, key)
            tombstoned = sum(1 for t, _ in expected if t == table)
            assert reports[table].counts.tombstoned == tombstoned, table


def test_stripe_objects_that_cannot_be_parsed_are_quarantined_and_counted(
    harness_factory, nextbest_home, monkeypatch
):
    # Every fifth stored object of each kind is listed without its id or with `created` as
    # ISO text, and the sandbox records which. Read through the Dagster assets, as a run does.
    with harness_factory() as h:
        store = h.sb.store
        h.sb.admin.set_faults("stripe_malformed", stripe_malformed_every=5)
        for name, value in h.sb.env().items():
            monkeypatch.setenv(name, value)
        stripe_assets = [a for a in ingest.assets() if "stripe" in a.key.to_user_string()]
        result = dg.materialize(stripe_assets, resources=ingest.resources())
        assert result.success
        metadata = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        recorded = h.sb.admin.stripe_malformed()
        assert {r["field"] for r in recorded} == {"id", "created"}
        with connect(get_settings().warehouse, read_only=True) as con:
            for table, kind in KINDS.items():
                served = _served(h, table)
                broken = {r["id"]: r["field"] for r in recorded if r["kind"] == kind}
                # Positions 4, 9, 14, ... of the store's table, among the objects it lists.
                fifths = {
                    o["id"]
                    for p, o in enumerate(store.stripe[kind].objects)
                    if (p + 1) % 5 == 0 and o["id"] not in store.deleted_customers
                }
                assert set(broken) == fifths, table
                # Refunds are too few to have a fifth; every other kind has some.
                assert fifths or len(store.stripe[kind].objects) < 5, table
                assert metadata[table]["rows_quarantined"].value == len(broken), table
                stored = {
                    r[0]: json.loads(r[1])
                    for r in con.execute(f"select id, payload from raw.{table}").fetchall()
                }
                assert sorted(stored) == sorted(set(served) - set(broken)), table
                assert all(stored[k] == served[k] for k in stored), table
                rows = con.execute(
                    "select record_key, reason, payload from raw.quarantine where stream = ?",
                    [table],
                ).fetchall()
                got = {}
                for key, reason, payload in rows:
                    payload = json.loads(payload)
                    got[key or served_id(served, payload)] = (key, reason, payload)
                assert sorted(got) == sorted(broken), table
                for object_id, field in broken.items():
                    key, reason, payload = got[object_id]
                    if field == "id":
                        assert (key, reason) == (None, "missing id")
                        assert payload == {k: v for k, v in served[object_id].items() if k != "id"}
                    else:
                        text = payload["created"]
                        assert key == object_id and isinstance(text, str)
                        assert reason == f"created is not Unix seconds: {text!r}"
                        assert payload == served[object_id] | {"created": text}


def test_stripe_objects_set_aside_land_when_the_next_sync_lists_them_whole(harness_factory):
    # An object quarantined by one sync is older than the next one's `created` window, and
    # one without an id cannot be asked for: the next sync lists the stream in full.
    with harness_factory() as h:
        h.sb.admin.set_faults("stripe_malformed", stripe_malformed_every=5)
        first = h.sync_stripe("s1")
        h.sb.admin.set_faults("none")
        second = h.sync_stripe("s2")
        third = h.sync_stripe("s3")
        for table in KINDS:
            assert sorted(_stored(h, table)) == sorted(_served(h, table)), table
            if first[table].counts.quarantined:
                assert second[table].notes["mode"] == "full (records set aside by the last sync)"
            else:
                assert second[table].notes["mode"] == "incremental", table
            assert third[table].notes["mode"] == "incremental", table
        assert sum(first[t].counts.quarantined for t in KINDS) > 0


def test_records_still_unreadable_after_the_re_list_do_not_make_every_sync_a_full_one(
    harness_factory,
):
    with harness_factory() as h:
        h.sb.admin.set_faults("stripe_malformed", stripe_malformed_every=5)
        first = h.sync_stripe("s1")
        second = h.sync_stripe("s2")  # served the same broken objects again
        third = h.sync_stripe("s3")
        relisted = [t for t in KINDS if first[t].counts.quarantined]
        assert relisted
        for table in KINDS:
            relist = "full (records set aside by the last sync)"
            expected = relist if table in relisted else "incremental"
            assert second[table].notes["mode"] == expected, table
            # The re-list set the same records aside again; they are not listed whole again.
            assert second[table].counts.quarantined == first[table].counts.quarantined, table
            assert third[table].notes["mode"] == "incremental", table


def served_id(served: dict[str, dict], payload: dict) -> str:
    """The id of the served object a payload without one was cut from."""
    (match,) = [
        k for k, v in served.items() if {f: x for f, x in v.items() if f != "id"} == payload
    ]
    return match


def test_every_stripe_request_of_a_sync_carries_the_pinned_api_version(harness_factory):
    # The version that moved the invoice's subscription under `parent` (API_NOTES.md).
    pinned = "2025-03-31.basil"
    with harness_factory() as h:
        h.sync_stripe("s1")
        h.sb.admin.set_subscription_status(
            h.sb.store.stripe["subscriptions"].objects[0]["id"], "past_due"
        )
        h.sync_stripe("s2")
        h.sync_stripe("s3", full_refresh=True)
        sent = h.sb.admin.stripe_requests()
        paths = {r["path"] for r in sent}
        assert {f"/v1/{kind}" for kind in KINDS.values()} | {"/v1/events"} <= paths
        assert {r["stripe_version"] for r in sent} == {pinned}
        # The record tells a request without the header apart.
        bare = httpx.get(
            f"{h.sb.stripe_url}/v1/customers",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {h.sb.stripe_key}"},
        )
        assert bare.status_code == 200
        assert h.sb.admin.stripe_requests()[-1]["stripe_version"] is None
