"""Stripe reads against the sandbox (real HTTP through the stripe SDK): failure modes 14-23."""

from __future__ import annotations

import json

import pytest
import stripe

from orchestration.ingest import stripe as sync

KINDS = {
    "stripe_customers": "customers",
    "stripe_subscriptions": "subscriptions",
    "stripe_invoices": "invoices",
    "stripe_charges": "charges",
    "stripe_refunds": "refunds",
}


def _served(h, table: str) -> dict[str, dict]:
    """What the sandbox serves for a table: every object rendered, deleted customers apart."""
    store = h.sb.store
    kind = KINDS[table]
    return {
        obj["id"]: json.loads(json.dumps(store.stripe_render(kind, obj)))
        for obj in store.stripe[kind].objects
        if not (kind == "customers" and obj["id"] in store.deleted_customers)
    }


def _stored(h, table: str) -> dict[str, tuple[dict, bool, str | None]]:
    rows = h.con.execute(f"select id, payload, is_deleted, deleted_reason from raw.{table}")
    return {r[0]: (json.loads(r[1]), r[2], r[3]) for r in rows.fetchall()}


def test_every_stripe_object_lands_whole_as_served(harness_factory):
    # 16 (status=all), 18 (refunds from /v1/refunds), 19 (JPY), 20 ($0 invoices),
    # 21 (parent.subscription_details), 22 (customers with and without metadata).
    with harness_factory() as h:
        reports = h.sync_stripe("s1")
        for table in KINDS:
            served, stored = _served(h, table), _stored(h, table)
            assert sorted(stored) == sorted(served), table
            assert all(stored[k][0] == served[k] for k in served), table
            assert reports[table].counts.inserted == len(served)
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
