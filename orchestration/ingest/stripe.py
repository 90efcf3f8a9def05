"""Reading Stripe into the raw layer: customers, subscriptions, invoices, charges, refunds.

Lists filter only on `created`, so an incremental read by `created` never sees an object change.
Each stream therefore reads new objects by `created` (with an overlap) and applies the changes
in `/v1/events` since its events cursor. Stripe keeps events for 30 days: a cursor older than
that cannot be caught up from the feed, so the stream is re-listed in full instead.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import duckdb
import stripe

from orchestration.clients.stripe import RetryingHTTPClient
from orchestration.ingest.intercom import StreamReport
from orchestration.ingest.load import (
    ObjectRow,
    get_cursor,
    quarantine,
    set_cursor,
    tombstone,
    upsert_objects,
)
from orchestration.ingest.settings import IngestSettings
from orchestration.warehouse import RAW_SCHEMA

log = logging.getLogger(__name__)

DAY = 86_400
PAGE_SIZE = 100


@dataclass(frozen=True)
class StripeStream:
    """One Stripe object list read into one raw table."""

    table: str
    service: str
    object_type: str
    list_params: dict[str, Any]


STRIPE_STREAMS: dict[str, StripeStream] = {
    s.table: s
    for s in (
        StripeStream("stripe_customers", "customers", "customer", {}),
        # Canceled subscriptions are hidden from the list unless asked for.
        StripeStream("stripe_subscriptions", "subscriptions", "subscription", {"status": "all"}),
        StripeStream("stripe_invoices", "invoices", "invoice", {}),
        StripeStream("stripe_charges", "charges", "charge", {}),
        StripeStream("stripe_refunds", "refunds", "refund", {}),
    )
}


def http_of(client: stripe.StripeClient) -> RetryingHTTPClient:
    """The retrying transport of a client made by `make_stripe_client`."""
    http = getattr(client, "retrying_http", None)
    if not isinstance(http, RetryingHTTPClient):
        raise TypeError("make the Stripe client with orchestration.clients.stripe")
    return http


def _as_dict(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _rows(
    records: list[Any], stream: StripeStream
) -> tuple[list[ObjectRow], list[tuple[str | None, str, Any]]]:
    rows: list[ObjectRow] = []
    bad: list[tuple[str | None, str, Any]] = []
    for record in records:
        payload = _as_dict(record)
        if not isinstance(payload, dict):
            bad.append((None, "not a JSON object", repr(payload)))
            continue
        key = payload.get("id")
        created = payload.get("created")
        if not isinstance(key, str) or not key:
            bad.append((None, "missing id", payload))
        elif payload.get("object") not in (stream.object_type, None):
            reason = f"object is {payload.get('object')!r}, not a {stream.object_type}"
            bad.append((key, reason, payload))
        elif not isinstance(created, int) or isinstance(created, bool):
            bad.append((key, f"created is not Unix seconds: {created!r}", payload))
        else:
            rows.append(ObjectRow(key, created, payload))
    return rows, bad


def _list(client: stripe.StripeClient, stream: StripeStream, created_gte: int | None) -> list[Any]:
    params: dict[str, Any] = {"limit": PAGE_SIZE, **stream.list_params}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    service = getattr(client.v1, stream.service)
    return list(service.list(params=params).auto_paging_iter())


def _events(client: stripe.StripeClient, created_gte: int) -> list[dict]:
    params = {"limit": PAGE_SIZE, "created": {"gte": created_gte}}
    events = [_as_dict(e) for e in client.v1.events.list(params=params).auto_paging_iter()]
    # Oldest first, so a later change of one object wins.
    return sorted(events, key=lambda e: (e.get("created") or 0, e.get("id") or ""))


def sync_stripe_stream(
    client: stripe.StripeClient,
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    sync_id: str,
    settings: IngestSettings | None = None,
) -> StreamReport:
    """Sync one Stripe stream: full list the first time, then new objects plus the event feed.

    The cursor (`{"created": ..., "events": ...}`, server time) is committed with the rows.
    """
    settings = settings or IngestSettings()
    stream = STRIPE_STREAMS[table]
    http = http_of(client)
    started, before = time.monotonic(), http.stats.snapshot()
    report = StreamReport(table)
    cursor = None if settings.full_refresh else get_cursor(con, table)
    state = json.loads(cursor) if cursor else None
    # Ask the server for its time first: the sandbox, or a skewed host, may live elsewhere.
    newest_event = _events_newest(client)
    now = http.clock.now()
    retention = settings.stripe_events_retention_days * DAY
    mode = "incremental"
    if state is None:
        mode = "full"
    elif state["events"] < now - retention:
        mode = "full (events cursor older than Stripe keeps events)"
        log.warning(
            "%s: events cursor is %.1f days old, beyond the %d days Stripe keeps events: "
            "re-listing in full",
            table,
            (now - state["events"]) / DAY,
            settings.stripe_events_retention_days,
        )
    rows: list[ObjectRow] = []
    bad: list[tuple[str | None, str, Any]] = []
    deleted: list[str] = []
    gone: list[str] = []
    applied = 0
    if mode != "incremental":
        records = _list(client, stream, None)
        rows, bad = _rows(records, stream)
        listed = {row.id for row in rows}
        alive = {
            r[0]
            for r in con.execute(
                f"select id from {RAW_SCHEMA}.{table} where not is_deleted"
            ).fetchall()
        }
        # A full list leaves out deleted objects: ask for each one that went missing.
        for object_id in sorted(alive - listed):
            found = _retrieve(client, stream, object_id)
            if found is None:
                gone.append(object_id)
            elif found.get("deleted"):
                deleted.append(object_id)
            else:
                more, more_bad = _rows([found], stream)
                rows += more
                bad += more_bad
        # With no event yet there is nothing to resume from: 0 keeps the next sync a full one
        # until the feed has an event, rather than trusting a clock that may not be the server's.
        events_from = newest_event if newest_event is not None else 0
    else:
        overlap = settings.stripe_overlap_seconds
        records = _list(client, stream, max(0, state["created"] - overlap))
        rows, bad = _rows(records, stream)
        events_from = state["events"]
        for event in _events(client, max(0, state["events"] - overlap)):
            # The feed is one for all streams: any event read moves this stream's cursor.
            events_from = max(events_from, event.get("created") or 0)
            obj = (event.get("data") or {}).get("object") or {}
            if not isinstance(obj, dict) or obj.get("object") != stream.object_type:
                continue
            applied += 1
            # Only customers are deleted outright; `customer.subscription.deleted` is a cancel,
            # whose snapshot is the canceled subscription.
            is_delete = obj.get("deleted") or event.get("type") == "customer.deleted"
            if is_delete and stream.object_type == "customer":
                deleted.append(obj.get("id"))
                continue
            more, more_bad = _rows([obj], stream)
            for row in more:
                row.updated_at = max(row.updated_at or 0, event.get("created") or 0)
            rows += more
            bad += more_bad
    newest_created = max((row.payload.get("created", 0) for row in rows), default=0)
    new_state = {
        "created": max(newest_created, state["created"] if state else 0),
        "events": max(events_from, state["events"] if state and mode == "incremental" else 0),
    }
    con.execute("begin transaction")
    try:
        report.counts = upsert_objects(con, table, rows, sync_id)
        report.counts.quarantined = quarantine(con, table, bad, sync_id)
        report.counts.tombstoned = tombstone(
            con, table, [d for d in deleted if d], "deleted", sync_id, updated_at=now
        ) + tombstone(con, table, gone, "not_found", sync_id, updated_at=now)
        set_cursor(con, table, json.dumps(new_state, sort_keys=True), sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.read = len(rows) + len(bad)
    report.notes |= {"mode": mode, "events_applied": applied}
    report.client = http.stats.difference(http.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report


def _events_newest(client: stripe.StripeClient) -> int | None:
    page = client.v1.events.list(params={"limit": 1})
    data = list(page.data)
    return _as_dict(data[0]).get("created") if data else None


def _retrieve(client: stripe.StripeClient, stream: StripeStream, object_id: str) -> dict | None:
    service = getattr(client.v1, stream.service)
    try:
        return _as_dict(service.retrieve(object_id))
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise
