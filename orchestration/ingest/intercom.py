"""Reading Intercom into the raw layer: contacts, companies, contact-company links, events.

Plain functions of a client and a DuckDB connection, so tests call them without Dagster. Each
returns a `StreamReport` with the row counts and what the client did.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from orchestration.clients.intercom import (
    AsyncIntercomClient,
    IntercomBadRequest,
    IntercomClient,
    IntercomError,
    IntercomNotFound,
    IntercomServerError,
)
from orchestration.ingest.load import (
    EventRow,
    LoadCounts,
    ObjectRow,
    as_unix_seconds,
    clear_cursor,
    event_key,
    get_cursor,
    insert_rows,
    now_utc,
    quarantine,
    quarantined_already,
    set_cursor,
    tombstone,
    upsert_events,
    upsert_objects,
    with_ordinals,
)
from orchestration.ingest.settings import IngestSettings
from orchestration.warehouse import RAW_SCHEMA

log = logging.getLogger(__name__)

DAY = 86_400


@dataclass
class StreamReport:
    """What one stream's sync did: row counts, client numbers and notes for the log."""

    stream: str
    counts: LoadCounts = field(default_factory=LoadCounts)
    client: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Flat numbers for Dagster metadata and the log."""
        counts = self.counts
        flat: dict[str, Any] = {
            "rows_read": counts.read,
            "rows_inserted": counts.inserted,
            "rows_updated": counts.updated,
            "rows_unchanged": counts.unchanged,
            "rows_duplicated": counts.duplicates,
            "rows_quarantined": counts.quarantined,
            "rows_tombstoned": counts.tombstoned,
            "requests": int(self.client.get("requests", 0)),
            "responses_429": int(self.client.get("rate_limited", 0)),
            "retries": int(self.client.get("retries", 0)),
            "seconds_waited": self.client.get("seconds_waited", 0.0),
            "seconds_throttled": self.client.get("seconds_throttled", 0.0),
            "seconds": round(self.seconds, 3),
        }
        return flat | self.notes

    def summary(self) -> str:
        """One log line with the numbers (and what the warehouse still lacks, if anything)."""
        m = self.metadata()
        line = (
            f"{self.stream}: read {m['rows_read']:,}, inserted {m['rows_inserted']:,}, "
            f"updated {m['rows_updated']:,}, unchanged {m['rows_unchanged']:,}, "
            # Named, so that the read adds up: a Stripe object in both its list and the event
            # feed is read twice and stored once.
            f"repeated {m['rows_duplicated']:,}, "
            f"quarantined {m['rows_quarantined']:,}, tombstoned {m['rows_tombstoned']:,}; "
            f"{m['requests']:,} requests, {m['responses_429']:,} answered 429, "
            f"{m['retries']:,} retries, {m['seconds']:.1f} s"
        )
        if m.get("history_note"):
            line += f". {m['history_note']}"
        return line


class IngestError(RuntimeError):
    """A sync that could not finish; its cursor was not moved, so the next sync repeats it."""


# Windows ---------------------------------------------------------------------------------------


def contact_window(cursor: int | None, sync_start: int, lookback: int) -> tuple[int, int] | None:
    """The inclusive window `[low, high]` of `updated_at` seconds an incremental read covers.

    `high` is the second before the sync started, so a contact updated during the sync falls in
    the next window; the next window starts at `high + 1`, less the look-back that covers
    search lag. With no cursor (first or full sync) there is no window: read everything.
    """
    if cursor is None:
        return None
    high = sync_start - 1
    low = max(0, cursor + 1 - lookback)
    return low, high


def window_query(low: int, high: int) -> dict:
    """A contacts search for `low <= updated_at <= high`.

    Intercom's date fields take only `>` and `<` (no `>=`, `<=`), so the inclusive bounds
    become `> low - 1` and `< high + 1` at one-second resolution.
    """
    return {
        "operator": "AND",
        "value": [
            {"field": "updated_at", "operator": ">", "value": low - 1},
            {"field": "updated_at", "operator": "<", "value": high + 1},
        ],
    }


# Contacts --------------------------------------------------------------------------------------


def _parse_objects(
    stream: str, records: Iterable[Any], time_field: str = "updated_at"
) -> tuple[list[ObjectRow], list[tuple[str | None, str, Any]], int]:
    rows: list[ObjectRow] = []
    bad: list[tuple[str | None, str, Any]] = []
    milliseconds = 0
    for record in records:
        if not isinstance(record, dict):
            bad.append((None, f"not a JSON object: {type(record).__name__}", repr(record)))
            continue
        key = record.get("id")
        if not isinstance(key, str) or not key:
            bad.append((None, "missing or non-string id", record))
            continue
        stamp, was_ms = as_unix_seconds(record.get(time_field))
        if stamp is None:
            reason = f"{time_field} is not Unix seconds: {record.get(time_field)!r}"
            bad.append((key, reason, record))
            continue
        milliseconds += was_ms
        rows.append(ObjectRow(key, stamp, record))
    return rows, bad, milliseconds


def sync_contacts(
    client: IntercomClient,
    con: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    settings: IngestSettings | None = None,
    sync_start: int | None = None,
) -> StreamReport:
    """Read contacts changed since the cursor (all on the first or a full sync) and upsert them.

    Contacts that vanished (merged, deleted or archived answer 404) become tombstones. The
    cursor moves to the window's end in the same transaction as the rows.
    """
    settings = settings or IngestSettings()
    started, before = time.monotonic(), client.stats.snapshot()
    sync_start = client.clock.now() if sync_start is None else sync_start
    stream = "intercom_contacts"
    report = StreamReport(stream)
    cursor = None if settings.full_refresh else get_cursor(con, stream)
    window = contact_window(int(cursor) if cursor else None, sync_start, settings.lookback_seconds)
    if window is None:
        log.info("contacts: full read")
        records = list(client.list_contacts(per_page=settings.contacts_per_page))
        report.notes["mode"] = "full"
    else:
        low, high = window
        log.info("contacts: search updated_at in [%d, %d]", low, high)
        query = window_query(low, high)
        records = list(client.search_contacts(query, per_page=settings.contacts_per_page))
        report.notes |= {"mode": "incremental", "window_low": low, "window_high": high}
    rows, bad, milliseconds = _parse_objects(stream, records)
    report.notes["updated_at_in_milliseconds"] = milliseconds
    seen = {row.id for row in rows}
    # A contact missing from a full listing, or from the id listing of an incremental sync,
    # may be merged, deleted or archived: ask for it, and keep a 404 as a tombstone.
    listed = seen
    if window is not None:
        listing = list(client.list_contacts(per_page=settings.contacts_per_page))
        listed = {c.get("id") for c in listing if isinstance(c, dict)}
        # A contact listed but never stored (set aside as malformed by an earlier sync and
        # not changed since) is outside the search window: take it from the listing, or it
        # would stay missing until a full refresh.
        stored_sql = f"select id from {RAW_SCHEMA}.intercom_contacts"
        stored = {r[0] for r in con.execute(stored_sql).fetchall()}
        searched = {r.get("id") for r in records if isinstance(r, dict)}
        # A listed record that is not an object is set aside like one searched.
        missed = [
            c for c in listing if not isinstance(c, dict) or c.get("id") not in stored | searched
        ]
        more, more_bad, _ = _parse_objects(stream, missed)
        # One listed as it was when set aside would be set aside again for the same reason:
        # it stays in the quarantine, not counted again, until it changes or a full refresh.
        known = quarantined_already(con, stream, more_bad)
        rows += more
        bad += [record for record, seen in zip(more_bad, known, strict=True) if not seen]
        report.notes["contacts_recovered"] = len(more)
        report.notes["contacts_left_set_aside"] = sum(known)
    alive = {
        r[0]
        for r in con.execute(
            f"select id from {RAW_SCHEMA}.intercom_contacts where not is_deleted"
        ).fetchall()
    }
    gone: list[str] = []
    for contact_id in sorted(alive - listed - seen):
        try:
            found = client.get_contact(contact_id)
        except IntercomNotFound:
            gone.append(contact_id)
            continue
        more, more_bad, _ = _parse_objects(stream, [found])
        rows += more
        bad += more_bad
    con.execute("begin transaction")
    try:
        report.counts = upsert_objects(con, stream, rows, sync_id)
        report.counts.quarantined = quarantine(con, stream, bad, sync_id)
        report.counts.tombstoned = tombstone(
            con, stream, gone, "not_found", sync_id, updated_at=client.clock.now()
        )
        # The cursor is the newest change read, in the server's time (never beyond the
        # window): this machine's clock may disagree with the server's.
        newest = max((row.updated_at or 0 for row in rows), default=None)
        if newest is not None:
            high = window[1] if window is not None else sync_start - 1
            previous = int(cursor) if cursor else 0
            set_cursor(con, stream, str(max(previous, min(newest, high))), sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.read = len(records)
    report.client = client.stats.difference(client.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report


# Companies -------------------------------------------------------------------------------------


def read_all_companies(
    client: IntercomClient,
    *,
    restarts: int = 3,
    busy_wait: float = 65.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Any], int]:
    """Every company through the scroll, restarting it whole after expiry or a 5xx.

    The loop ends on an empty page, not on an unchanged `scroll_param` (Intercom may repeat
    it). A scroll still open elsewhere (400 `scroll_exists`) is waited out. A read that could
    not finish raises: a partial scroll is never reported as complete.

    Returns:
        The records (duplicates across pages included) and how many times the scroll restarted.
    """
    attempts = 0
    for attempt in range(restarts + 1):
        attempts = attempt
        records: list[Any] = []
        scroll_param = None
        try:
            while True:
                page = client.scroll_companies_page(scroll_param)
                data = page["data"]
                if not data:
                    return records, attempts
                records.extend(data)
                scroll_param = page.get("scroll_param") or scroll_param
        except IntercomNotFound as exc:
            log.warning("companies scroll expired after %d companies; restarting", len(records))
            last: IntercomError = exc
        except IntercomServerError as exc:
            log.warning("companies scroll broke on %s; restarting from the start", exc.status)
            last = exc
        except IntercomBadRequest as exc:
            if exc.code != "scroll_exists":
                raise
            log.warning("another companies scroll is open; waiting %.0f s", busy_wait)
            sleep(busy_wait)
            last = exc
    raise IngestError(f"companies scroll did not complete after {attempts + 1} tries: {last}")


def sync_companies(
    client: IntercomClient,
    con: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    settings: IngestSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> StreamReport:
    """Read every company through the scroll and upsert them; vanished ones become tombstones."""
    settings = settings or IngestSettings()
    started, before = time.monotonic(), client.stats.snapshot()
    stream = "intercom_companies"
    report = StreamReport(stream)
    records, restarts = read_all_companies(
        client,
        restarts=settings.scroll_restarts,
        busy_wait=settings.scroll_busy_wait_seconds,
        sleep=sleep,
    )
    rows, bad, milliseconds = _parse_objects(stream, records)
    seen = {row.id for row in rows}
    alive = {
        r[0]
        for r in con.execute(
            f"select id from {RAW_SCHEMA}.intercom_companies where not is_deleted"
        ).fetchall()
    }
    con.execute("begin transaction")
    try:
        report.counts = upsert_objects(con, stream, rows, sync_id)
        report.counts.quarantined = quarantine(con, stream, bad, sync_id)
        # The scroll lists every company: one missing from a complete scroll is gone.
        report.counts.tombstoned = tombstone(con, stream, alive - seen, "not_found", sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.read = len(records)
    report.notes |= {"scroll_restarts": restarts, "updated_at_in_milliseconds": milliseconds}
    report.client = client.stats.difference(client.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report


def sync_contact_companies(
    client: IntercomClient, con: duckdb.DuckDBPyConnection, *, sync_id: str
) -> StreamReport:
    """Make the stored links match each live contact's companies; unchanged links stay as is.

    A contact's payload embeds its companies; only when the list is cut short (`has_more`)
    is `/contacts/{id}/companies` asked. An entry that is not an object or has no text id is
    set aside (keyed by the contact), and that contact's stored links are kept as they are.
    """
    started, before = time.monotonic(), client.stats.snapshot()
    report = StreamReport("intercom_contact_companies")
    contacts = con.execute(
        f"""
        select id, payload->'companies' from {RAW_SCHEMA}.intercom_contacts
        where not is_deleted
        """
    ).fetchall()
    stream = "intercom_contact_companies"
    desired: list[tuple[str, str, str]] = []
    bad: list[tuple[str | None, str, Any]] = []
    for contact_id, companies_json in contacts:
        companies = json.loads(companies_json) if companies_json else None
        if isinstance(companies, dict) and not companies.get("has_more"):
            linked = companies.get("data") or []
        else:
            linked = client.list_contact_companies(contact_id)
        for company in linked:
            about = f"company of contact {contact_id}"
            if not isinstance(company, dict):
                reason = f"{about}: not a JSON object: {type(company).__name__}"
                bad.append((contact_id, reason, repr(company)))
                continue
            company_id = company.get("id")
            # A company id that is not text matches no stored company (their ids are text).
            if company_id is not None and not isinstance(company_id, str):
                reason = f"{about}: id is a {type(company_id).__name__}, not a string"
                bad.append((contact_id, reason, company))
            elif not company_id:
                bad.append((contact_id, f"{about}: missing id", company))
            else:
                desired.append((contact_id, company_id, json.dumps(company, sort_keys=True)))
    # A contact with an entry set aside keeps the links stored for it: the entry that could
    # not be read may be one of them.
    unsure = sorted({key for key, _, _ in bad if key})
    report.counts.read = len(desired) + len(bad)
    con.execute("begin transaction")
    try:
        con.execute(
            "create or replace temp table _links "
            "(contact_id varchar, company_id varchar, payload varchar)"
        )
        if desired:
            insert_rows(
                con,
                "insert into _links select * from _rows",
                [],
                ("contact_id", "company_id", "payload"),
                desired,
            )
        live = f"select id from {RAW_SCHEMA}.intercom_contacts where not is_deleted"
        removed = con.execute(
            f"""
            delete from {RAW_SCHEMA}.intercom_contact_companies as t
            where t.contact_id in ({live})
                and t.contact_id not in (select unnest(?::varchar[]))
                and not exists (
                    select 1 from _links as l
                    where l.contact_id = t.contact_id and l.company_id = t.company_id
                )
            returning 1
            """,
            [unsure],
        ).fetchall()
        added = con.execute(
            f"""
            insert into {RAW_SCHEMA}.intercom_contact_companies
            select distinct on (contact_id, company_id) contact_id, company_id, payload::json,
                ?, ?
            from _links as l
            where not exists (
                select 1 from {RAW_SCHEMA}.intercom_contact_companies as t
                where t.contact_id = l.contact_id and t.company_id = l.company_id
            )
            returning 1
            """,
            [sync_id, now_utc()],
        ).fetchall()
        con.execute("drop table _links")
        report.counts.quarantined = quarantine(con, stream, bad, sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.inserted = len(added)
    report.counts.unchanged = len(desired) - len(added)
    report.notes["links_removed"] = len(removed)
    report.client = client.stats.difference(client.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report


# Events ----------------------------------------------------------------------------------------


@dataclass
class ContactToRead:
    """A contact whose events must be read, with what the last read left."""

    contact_id: str
    external_id: str | None
    email: str | None
    created_at: int | None
    updated_at: int | None
    complete_from: int | None
    last_read_at: int | None


def contacts_needing_events(
    con: duckdb.DuckDBPyConnection, *, full_refresh: bool = False
) -> list[ContactToRead]:
    """Live contacts never read, or changed since their events were last read."""
    changed = (
        "true"
        if full_refresh
        else ("v.contact_id is null or v.contact_updated_at is distinct from c.updated_at")
    )
    rows = con.execute(
        f"""
        select c.id, c.payload->>'external_id', c.payload->>'email',
            least(
                try_cast(c.payload->>'created_at' as bigint),
                try_cast(c.payload->>'signed_up_at' as bigint)
            ),
            c.updated_at, v.complete_from, v.last_read_at
        from {RAW_SCHEMA}.intercom_contacts as c
        left join {RAW_SCHEMA}.intercom_event_coverage as v on v.contact_id = c.id
        where not c.is_deleted and ({changed})
        order by c.id
        """
    ).fetchall()
    return [ContactToRead(*row) for row in rows]


def complete_from(
    contact: ContactToRead, read_at: int, oldest_event: int | None, retention_days: int
) -> int:
    """From when the contact's event history is complete after a read at `read_at`.

    Intercom lists only the last `retention_days` of events. History is complete since sign-up
    when the contact signed up inside that window, or when the API evidently served older
    events (a sandbox with the window off). A contact re-read within the window keeps its
    earlier start; after a longer gap, events in between may be lost, so it restarts.
    """
    horizon = read_at - retention_days * DAY
    created = contact.created_at
    known = contact.complete_from is not None and contact.last_read_at is not None
    if known and contact.last_read_at >= horizon:
        return contact.complete_from
    if created is not None and created >= horizon:
        return created
    if oldest_event is not None and oldest_event < horizon:
        return min(oldest_event, created) if created is not None else oldest_event
    return horizon


def _text(event: dict, name: str) -> str | None:
    """A text field of an event, None when absent; raises ValueError for another type.

    A whole number is taken as the text of its digits: Intercom documents these ids as
    strings, but a workspace that sends its own numeric user ids may get them back as
    numbers, and the digits are what an export's CSV holds for the same event (so the API
    read and `import-events` give it the same id). Nothing is lost in that reading. A float
    (`1.0` or `1e20` may have lost digits already), a bool, an object or a list has no one
    text: the event is set aside instead.
    """
    value = event.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{name} is a {type(value).__name__}, not a string")


def _event_row(contact: ContactToRead, event: Any, ordinal: int = 0) -> EventRow:
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object: {type(event).__name__}")
    name = event.get("event_name")
    if not isinstance(name, str) or not name:
        raise ValueError("missing event_name")
    created, _ = as_unix_seconds(event.get("created_at"))
    if created is None:
        raise ValueError(f"created_at is not Unix seconds: {event.get('created_at')!r}")
    contact_id = _text(event, "intercom_user_id") or contact.contact_id
    return EventRow(
        id=event_key(contact_id, name, created, ordinal),
        intercom_event_id=_text(event, "id"),
        contact_id=contact_id,
        external_id=_text(event, "user_id") or contact.external_id,
        email=_text(event, "email") or contact.email,
        event_name=name,
        created_at=created,
        payload=event,
        source="api",
    )


@dataclass
class _ContactEvents:
    contact: ContactToRead
    events: list[Any]
    missing: bool = False


async def _read_contact_events(
    client: AsyncIntercomClient, contact: ContactToRead
) -> _ContactEvents:
    # Every page of the contact's window is read, not only what is new since the last read:
    # a merge moves old events onto the surviving contact, and they must move here too.
    try:
        events = [e async for e in client.list_events(intercom_user_id=contact.contact_id)]
    except IntercomNotFound:
        return _ContactEvents(contact, [], missing=True)
    return _ContactEvents(contact, events)


def sync_events(
    client: AsyncIntercomClient,
    con: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    settings: IngestSettings | None = None,
    read_at: int | None = None,
    flush_every: int = 500,
    progress: Callable[[str], None] | None = None,
) -> StreamReport:
    """Read the events of every contact that changed since its last read, concurrently.

    Events and each contact's coverage are stored together, a batch at a time, so an
    interrupted sync keeps what it finished and the next sync reads only the rest. The
    client runs on its own event loop and is closed at the end.
    """
    settings = settings or IngestSettings()

    async def run() -> StreamReport:
        try:
            return await _sync_events(
                client, con, sync_id, settings, read_at, flush_every, progress or log.info
            )
        finally:
            await client.aclose()

    return asyncio.run(run())


async def _sync_events(
    client: AsyncIntercomClient,
    con: duckdb.DuckDBPyConnection,
    sync_id: str,
    settings: IngestSettings,
    read_at: int | None,
    flush_every: int,
    progress: Callable[[str], None],
) -> StreamReport:
    started, before = time.monotonic(), client.stats.snapshot()
    wall_start = time.time()
    report = StreamReport("intercom_events")
    todo = contacts_needing_events(con, full_refresh=settings.full_refresh)
    progress(f"events: {len(todo):,} contacts to read, {settings.event_concurrency} at a time")
    semaphore = asyncio.Semaphore(settings.event_concurrency)

    async def bounded(contact: ContactToRead) -> _ContactEvents:
        async with semaphore:
            return await _read_contact_events(client, contact)

    pending: list[_ContactEvents] = []
    done = missing = 0
    first_error: BaseException | None = None
    # One batch is written at a time, in a worker thread: DuckDB releases the interpreter
    # while it works, so the requests go on meanwhile. Written on the event loop, a batch of
    # 500 contacts (tens of thousands of events) stopped every request for about a second.
    writing: asyncio.Future[None] | None = None
    tasks = [asyncio.create_task(bounded(contact)) for contact in todo]
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                result = await finished
            except IntercomError as exc:
                # Keep what finished, then fail loudly: the rest is read by the next sync.
                first_error = exc
                break
            pending.append(result)
            done += 1
            missing += result.missing
            if len(pending) >= flush_every:
                read_at = read_at or _read_start(client, wall_start)
                if writing is not None:
                    await writing
                batch, pending = pending, []
                writing = asyncio.ensure_future(
                    asyncio.to_thread(_flush_events, con, batch, report, sync_id, read_at, settings)
                )
            if done % settings.progress_every == 0:
                progress(
                    f"events: {done:,} of {len(todo):,} contacts read, "
                    f"{report.counts.read:,} events stored so far, "
                    f"{client.stats.requests:,} requests, {client.stats.rate_limited:,} 429s"
                )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if writing is not None:
            await writing
        if pending:
            read_at = read_at or _read_start(client, wall_start)
            _flush_events(con, pending, report, sync_id, read_at, settings)
    report.notes |= {
        "contacts_to_read": len(todo),
        "contacts_read": done,
        "contacts_not_found": missing,
    }
    report.notes |= history_notes(con, settings.event_retention_days)
    report.client = client.stats.difference(client.stats.snapshot(), before)
    report.seconds = time.monotonic() - started
    if first_error is not None:
        raise IngestError(
            f"events: stopped after {done} of {len(todo)} contacts ({report.summary()}): "
            f"{first_error}"
        ) from first_error
    log.info(report.summary())
    return report


def incomplete_histories(con: duckdb.DuckDBPyConnection) -> int:
    """Live contacts whose stored events start after their sign-up: older ones were not served."""
    return con.execute(
        f"""
        select count(*)
        from {RAW_SCHEMA}.intercom_event_coverage as v
        join {RAW_SCHEMA}.intercom_contacts as c on c.id = v.contact_id
        where not c.is_deleted
            and v.complete_from > least(
                try_cast(c.payload->>'created_at' as bigint),
                try_cast(c.payload->>'signed_up_at' as bigint)
            )
        """
    ).fetchone()[0]


def history_notes(con: duckdb.DuckDBPyConnection, retention_days: int) -> dict[str, Any]:
    """What the events table holds against what exists, for the report and the log.

    Intercom lists only the last `retention_days` of a contact's events: a contact who signed
    up before that has older history the API did not give, which only an export can fill.
    """
    incomplete = incomplete_histories(con)
    notes: dict[str, Any] = {
        "event_window_days": retention_days,
        "contacts_history_incomplete": incomplete,
    }
    if incomplete:
        notes["history_note"] = (
            f"Intercom served only the last {retention_days} days of events: {incomplete:,} "
            f"contacts have older history that was not served (complete only from "
            f"{retention_days} days before their read); load an export of it with "
            f"`nextbest import-events FILE`"
        )
        log.warning(notes["history_note"])
    return notes


def _read_start(client: AsyncIntercomClient, wall_start: float) -> int:
    # When the read started, in the server's time (known once it has answered).
    return client.clock.now() - int(time.time() - wall_start)


def _flush_events(
    con: duckdb.DuckDBPyConnection,
    results: list[_ContactEvents],
    report: StreamReport,
    sync_id: str,
    read_at: int,
    settings: IngestSettings,
) -> None:
    rows: list[EventRow] = []
    bad: list[tuple[str | None, str, Any]] = []
    coverage: list[tuple[Any, ...]] = []
    # Per contact with events set aside: its coverage row, its records in `bad` and the
    # `updated_at` to note once the retry is spent.
    retry: list[tuple[int, int, int, int | None]] = []
    for result in results:
        contact = result.contact
        oldest: int | None = None
        parsed: list[EventRow] = []
        set_aside = len(bad)
        for event in result.events:
            try:
                parsed.append(_event_row(contact, event))
            except ValueError as exc:
                bad.append((contact.contact_id, f"event: {exc}", event))
        # Same contact, name and second: number the copies in Intercom id order.
        parsed.sort(key=lambda r: (r.created_at, r.event_name, r.intercom_event_id or ""))
        keys = [(r.contact_id or "", r.event_name, r.created_at) for r in parsed]
        for row, ordinal in zip(parsed, with_ordinals(keys), strict=True):
            if ordinal:
                row.id = event_key(row.contact_id or "", row.event_name, row.created_at, ordinal)
            rows.append(row)
            oldest = row.created_at if oldest is None else min(oldest, row.created_at)
        if result.missing:
            continue
        start = complete_from(contact, read_at, oldest, settings.event_retention_days)
        # A contact with events set aside is read again by the next sync (no `updated_at`
        # to compare with): a contact's events are re-read only when it changes, so an event
        # served whole later would otherwise never land.
        seen_at = contact.updated_at if len(bad) == set_aside else None
        if len(bad) > set_aside:
            retry.append((len(coverage), set_aside, len(bad), contact.updated_at))
        coverage.append((contact.contact_id, contact.external_id, start, read_at, seen_at))
    con.execute("begin transaction")
    try:
        # Once only: a read that sets aside nothing new (the same events, as served before)
        # was that retry, and the contact is read again when it changes or on a full refresh.
        known = quarantined_already(con, "intercom_events", bad)
        for index, low, high, updated_at in retry:
            if all(known[low:high]):
                coverage[index] = (*coverage[index][:4], updated_at)
        counts = upsert_events(con, rows, sync_id)
        counts.quarantined = quarantine(con, "intercom_events", bad, sync_id)
        if coverage:
            insert_rows(
                con,
                f"insert or replace into {RAW_SCHEMA}.intercom_event_coverage "
                "select contact_id, external_id, complete_from, last_read_at, "
                "contact_updated_at, ?, ? from _rows",
                [sync_id, now_utc()],
                (
                    "contact_id",
                    "external_id",
                    "complete_from",
                    "last_read_at",
                    "contact_updated_at",
                ),
                coverage,
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.counts.add(counts)


def reset_intercom_cursors(con: duckdb.DuckDBPyConnection) -> None:
    """Forget the Intercom cursors so the next sync reads in full."""
    clear_cursor(con, "intercom_contacts")
