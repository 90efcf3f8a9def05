"""Stripe feed events whose `created` is not Unix seconds are set aside, never in the cursor.

No server: a stand-in for the SDK client serves fixed lists.
"""

from __future__ import annotations

import json
import time
from typing import Any

import duckdb

from orchestration.clients.stripe import RetryingHTTPClient
from orchestration.ingest.load import set_cursor
from orchestration.ingest.stripe import sync_stripe_stream
from orchestration.warehouse import ensure_raw_tables

T = 1_700_000_000


class _Page:
    def __init__(self, items: list[Any]):
        self.data = items

    def auto_paging_iter(self):
        return iter(self.data)


class _Service:
    def __init__(self, items: list[Any]):
        self.items = items

    def list(self, params: dict[str, Any]) -> _Page:
        items = self.items
        if "type" in params:
            items = [e for e in items if e.get("type") == params["type"]]
        return _Page(items[: params["limit"]] if params["limit"] == 1 else items)


class _Client:
    """What `sync_stripe_stream` uses of a `StripeClient`: events, customers, the transport."""

    def __init__(self, events: list[Any], customers: list[dict]):
        # The feed newest first, as Stripe lists it.
        self.v1 = type("V1", (), {})()
        self.v1.events = _Service(events)
        self.v1.customers = _Service(customers)
        self.retrying_http = RetryingHTTPClient(max_attempts=1)
        self.retrying_http.clock.pin(T - time.time())


def _event(event_id: str, created: Any, customer: dict, kind: str = "customer.updated") -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": customer},
    }


def _customer(customer_id: str, **fields: Any) -> dict:
    return {"id": customer_id, "object": "customer", "created": T - 2000} | fields


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    ensure_raw_tables(con)
    return con


def _set_aside(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "select stream, record_key, reason from raw.quarantine order by record_key"
    ).fetchall()


def test_feed_events_with_a_created_that_is_not_unix_seconds_are_set_aside():
    con = _warehouse()
    set_cursor(con, "stripe_customers", json.dumps({"created": T - 1000, "events": T - 500}), "s0")
    events = [
        _event("evt_inf", float("inf"), _customer("cus_5")),
        _event("evt_nan", float("nan"), _customer("cus_4")),
        _event("evt_text", str(T - 50), _customer("cus_2")),
        # A charge's event with a bad time is the charges stream's to set aside.
        _event("evt_charge", "soon", {"id": "ch_1", "object": "charge", "created": T}),
        _event("evt_ok", T - 100, _customer("cus_1", name="A")),
        _event("evt_null", None, _customer("cus_3")),
    ]
    report = sync_stripe_stream(_Client(events, []), con, "stripe_customers", sync_id="s1")
    stored = con.execute("select id, updated_at from raw.stripe_customers").fetchall()
    assert stored == [("cus_1", T - 100)]
    assert _set_aside(con) == [
        ("stripe_customers", "evt_inf", "event created is not Unix seconds: inf"),
        ("stripe_customers", "evt_nan", "event created is not Unix seconds: nan"),
        ("stripe_customers", "evt_null", "event created is not Unix seconds: None"),
        ("stripe_customers", "evt_text", "event created is not Unix seconds: '1699999950'"),
    ]
    assert (report.counts.read, report.counts.quarantined) == (5, 4)
    # The cursor moves to the newest event whose time could be read, evt_ok's.
    cursor = con.execute("select cursor from raw.sync_state").fetchone()[0]
    assert json.loads(cursor) == {"created": T - 1000, "events": T - 100}


def test_a_full_read_keeps_bad_event_times_out_of_tombstones_and_the_cursor():
    con = _warehouse()
    events = [
        # The newest event, which a full read resumes from, has a time that cannot be read.
        _event("evt_new", "soon", {"id": "in_1", "object": "invoice"}, "invoice.paid"),
        _event("evt_del", T - 300, _customer("cus_9", deleted=True), "customer.deleted"),
        _event("evt_gone", None, _customer("cus_8", deleted=True), "customer.deleted"),
    ]
    customers = [_customer("cus_1")]
    report = sync_stripe_stream(_Client(events, customers), con, "stripe_customers", sync_id="s1")
    stored = con.execute(
        "select id, updated_at, is_deleted from raw.stripe_customers order by id"
    ).fetchall()
    assert stored == [("cus_1", T - 2000, False), ("cus_9", T - 300, True)]
    assert _set_aside(con) == [
        ("stripe_customers", "evt_gone", "event created is not Unix seconds: None")
    ]
    assert report.counts.quarantined == 1
    # Nothing to resume the feed from: 0 makes the next sync list in full again.
    cursor = con.execute("select cursor from raw.sync_state").fetchone()[0]
    assert json.loads(cursor) == {"created": T - 2000, "events": 0}
