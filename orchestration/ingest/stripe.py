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
from dataclasses import dataclass, field
from typing import Any

import duckdb
import stripe

from orchestration.clients.stripe import RetryingHTTPClient, SentRequest
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


class StripeSyncError(RuntimeError):
    """A Stripe stream could not be read: names the stream and the request that failed.

    Nothing of the stream was stored and its cursor did not move, so the next sync reads the
    same span again.
    """

    def __init__(self, table: str, request: SentRequest | None, error: stripe.StripeError):
        sent = request.describe() if request else "before any request was answered"
        body = getattr(error, "error", None)
        # Stripe's error type and code (`api_error`, `rate_limit`), when the answer had a body.
        named = [type(error).__name__, getattr(body, "type", None), getattr(error, "code", None)]
        reason = f"{' '.join(n for n in named if n)}: {error.user_message or error}"
        super().__init__(f"{table}: {sent} failed: {reason}; its cursor was not moved")
        self.table, self.request, self.error = table, request, error


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


def _event_time(event: Any) -> int | None:
    """An event's `created` when it is Unix seconds (an int); None for text, null, NaN, ..."""
    created = event.get("created") if isinstance(event, dict) else None
    if isinstance(created, int) and not isinstance(created, bool):
        return created
    return None


def _event_object(event: dict) -> Any:
    data = event.get("data")
    return data.get("object") if isinstance(data, dict) else None


def _events(
    client: stripe.StripeClient,
    stream: StripeStream,
    created_gte: int | None,
    event_type: str | None = None,
) -> tuple[list[dict], list[tuple[str | None, str, Any]]]:
    """The feed's events oldest first, and those of this stream set aside.

    An event whose `created` is not Unix seconds can be neither ordered nor trusted to move
    the cursor: it is set aside by the stream its object belongs to (the others skip it, as
    they skip every event of another stream). One that is not an object at all cannot be
    told apart: every stream sets it aside.
    """
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    if event_type is not None:
        params["type"] = event_type
    events: list[dict] = []
    bad: list[tuple[str | None, str, Any]] = []
    for item in client.v1.events.list(params=params).auto_paging_iter():
        event = _as_dict(item)
        if not isinstance(event, dict):
            bad.append((None, "event is not a JSON object", repr(event)))
            continue
        if _event_time(event) is not None:
            events.append(event)
            continue
        obj = _event_object(event)
        if isinstance(obj, dict) and obj.get("object") == stream.object_type:
            key = event.get("id") if isinstance(event.get("id"), str) else None
            reason = f"event created is not Unix seconds: {event.get('created')!r}"
            bad.append((key, reason, event))
    # Oldest first, so a later change of one object wins.
    events.sort(key=lambda e: (e["created"], str(e.get("id") or "")))
    return events, bad


@dataclass
class _StreamRead:
    """What one read of a stream found, before any of it is stored."""

    mode: str
    now: int
    events_from: int
    rows: list[ObjectRow] = field(default_factory=list)
    bad: list[tuple[str | None, str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Deleted objects the feed showed, by id: the last snapshot, for ids never stored.
    deleted_snapshots: dict[str, ObjectRow] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    applied: int = 0


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

    Raises:
        StripeSyncError: A request failed for good (retries spent, or a 4xx that cannot
            succeed); nothing of the stream was stored.
    """
    settings = settings or IngestSettings()
    stream = STRIPE_STREAMS[table]
    http = http_of(client)
    started, before = time.monotonic(), http.stats.snapshot()
    report = StreamReport(table)
    cursor = None if settings.full_refresh else get_cursor(con, table)
    state = json.loads(cursor) if cursor else None
    try:
        read = _read(client, con, stream, state, settings)
    except stripe.StripeError as error:
        raise StripeSyncError(table, http.last_request(), error) from error
    rows = read.rows
    newest_created = max((row.payload.get("created", 0) for row in rows), default=0)
    new_state = {
        "created": max(newest_created, state["created"] if state else 0),
        "events": max(
            read.events_from, state["events"] if state and read.mode == "incremental" else 0
        ),
    }
    if read.mode == RELIST_FOR_SET_ASIDE:
        # Noted so that records still unreadable after the re-list do not make every later
        # sync a full one: they stay in the quarantine, counted, until a full refresh.
        new_state["relisted_for_set_aside"] = 1
    con.execute("begin transaction")
    try:
        report.counts = upsert_objects(con, table, rows, sync_id)
        report.counts.quarantined = quarantine(con, table, read.bad, sync_id)
        report.counts.tombstoned = (
            _new_tombstones(con, table, read, sync_id)
            + tombstone(
                con, table, [d for d in read.deleted if d], "deleted", sync_id, updated_at=read.now
            )
            + tombstone(con, table, read.gone, "not_found", sync_id, updated_at=read.now)
        )
        set_cursor(con, table, json.dumps(new_state, sort_keys=True), sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.read = len(rows) + len(read.bad)
    report.notes |= {"mode": read.mode, "events_applied": read.applied}
    report.client = http.stats.difference(http.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report


RELIST_FOR_SET_ASIDE = "full (records set aside by the last sync)"


def _set_aside_last_sync(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Records of the stream first set aside by the sync that committed its cursor.

    A record met again (an incremental sync's overlap reads it anew) was re-listed once
    already: counting it would make every other sync a full one.
    """
    return con.execute(
        f"""
        select count(*) from {RAW_SCHEMA}.quarantine as q
        join {RAW_SCHEMA}.sync_state as s
            on s.stream = q.stream and s.sync_id = q.sync_id
        where q.stream = ?
        """,
        [table],
    ).fetchone()[0]


def _read(
    client: stripe.StripeClient,
    con: duckdb.DuckDBPyConnection,
    stream: StripeStream,
    state: dict[str, int] | None,
    settings: IngestSettings,
) -> _StreamRead:
    """Read a stream in full or from its cursor; stores nothing."""
    table = stream.table
    http = http_of(client)
    # Ask the server for its time first: the sandbox, or a skewed host, may live elsewhere.
    newest_event = _events_newest(client)
    now = http.clock.now()
    retention = settings.stripe_events_retention_days * DAY
    mode = "incremental"
    if state is None:
        mode = "full"
    elif not state.get("relisted_for_set_aside") and (
        set_aside := _set_aside_last_sync(con, table)
    ):
        # Objects set aside are outside every later `created` window and, without an id or
        # an event, are never asked for again: the next sync lists the stream whole, once.
        mode = RELIST_FOR_SET_ASIDE
        log.warning("%s: the last sync set %d records aside: re-listing in full", table, set_aside)
    elif state["events"] < now - retention:
        mode = "full (events cursor older than Stripe keeps events)"
        log.warning(
            "%s: events cursor is %.1f days old, beyond the %d days Stripe keeps events: "
            "re-listing in full",
            table,
            (now - state["events"]) / DAY,
            settings.stripe_events_retention_days,
        )
    if mode != "incremental":
        records = _list(client, stream, None)
        rows, bad = _rows(records, stream)
        # With no event yet there is nothing to resume from: 0 keeps the next sync a full one
        # until the feed has an event, rather than trusting a clock that may not be the server's.
        read = _StreamRead(mode, now, newest_event if newest_event is not None else 0, rows, bad)
        listed = {row.id for row in rows}
        alive = {
            r[0]
            for r in con.execute(
                f"select id from {RAW_SCHEMA}.{table} where not is_deleted"
            ).fetchall()
        }
        if stream.object_type == "customer":
            # Customers deleted before this read are in no list; the feed still has the last
            # 30 days of them, so their invoices join.
            deletions, bad_events = _events(client, stream, None, event_type="customer.deleted")
            read.bad += bad_events
            for event in deletions:
                _note_deleted(read, event)
            # A listed customer is alive, whatever an older event said.
            read.deleted = [d for d in read.deleted if d not in listed]
            read.deleted_snapshots = {
                k: v for k, v in read.deleted_snapshots.items() if k not in listed
            }
        # A full list leaves out deleted objects: ask for each one that went missing.
        for object_id in sorted(alive - listed):
            found = _retrieve(client, stream, object_id)
            if found is None:
                read.gone.append(object_id)
            elif found.get("deleted"):
                read.deleted.append(object_id)
            else:
                more, more_bad = _rows([found], stream)
                read.rows += more
                read.bad += more_bad
        return read
    overlap = settings.stripe_overlap_seconds
    records = _list(client, stream, max(0, state["created"] - overlap))
    rows, bad = _rows(records, stream)
    read = _StreamRead(mode, now, state["events"], rows, bad)
    events, bad_events = _events(client, stream, max(0, state["events"] - overlap))
    read.bad += bad_events
    for event in events:
        # The feed is one for all streams: any event read moves this stream's cursor.
        read.events_from = max(read.events_from, event["created"])
        obj = _event_object(event) or {}
        if not isinstance(obj, dict) or obj.get("object") != stream.object_type:
            continue
        read.applied += 1
        # Only customers are deleted outright; `customer.subscription.deleted` is a cancel,
        # whose snapshot is the canceled subscription.
        is_delete = obj.get("deleted") or event.get("type") == "customer.deleted"
        if is_delete and stream.object_type == "customer":
            _note_deleted(read, event)
            continue
        more, more_bad = _rows([obj], stream)
        for row in more:
            row.updated_at = max(row.updated_at or 0, event["created"])
        read.rows += more
        read.bad += more_bad
    return read


def _note_deleted(read: _StreamRead, event: dict) -> None:
    """Record a `customer.deleted` event: a tombstone, from its snapshot if never stored."""
    obj = _event_object(event) or {}
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(object_id, str) or not object_id:
        read.bad.append((None, "deleted object without an id", event))
        return
    read.deleted.append(object_id)
    # Stripe's snapshot is the object as it was; a bare `{"id", "deleted": true}` is kept too.
    snapshot = {k: v for k, v in obj.items() if k != "deleted"}
    read.deleted_snapshots[object_id] = ObjectRow(
        object_id, event["created"], snapshot, is_deleted=True, deleted_reason="deleted"
    )


def _new_tombstones(
    con: duckdb.DuckDBPyConnection, table: str, read: _StreamRead, sync_id: str
) -> int:
    """Store deleted objects never stored before, as tombstones; returns how many."""
    if not read.deleted_snapshots:
        return 0
    known = {
        r[0]
        for r in con.execute(
            f"select id from {RAW_SCHEMA}.{table} where id in (select unnest(?))",
            [list(read.deleted_snapshots)],
        ).fetchall()
    }
    fresh = [row for key, row in read.deleted_snapshots.items() if key not in known]
    return upsert_objects(con, table, fresh, sync_id).inserted


def _events_newest(client: stripe.StripeClient) -> int | None:
    page = client.v1.events.list(params={"limit": 1})
    data = list(page.data)
    # A newest event whose time cannot be read gives nothing to resume from (None): the
    # cursor takes no text, null or NaN, and the next sync lists in full rather than guess.
    return _event_time(_as_dict(data[0])) if data else None


def _retrieve(client: stripe.StripeClient, stream: StripeStream, object_id: str) -> dict | None:
    service = getattr(client.v1, stream.service)
    try:
        return _as_dict(service.retrieve(object_id))
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise
