"""Writing to the raw layer: upserts by id that count what changed, tombstones, quarantine.

An upsert writes only rows that are new or differ from what is stored, so a sync that finds no
change writes no row (`sync_id` and `loaded_at` keep the values of the sync that last changed
the row). Payloads are stored as canonical JSON (sorted keys) so equal objects compare equal.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from orchestration.warehouse import OBJECT_TABLES, QUARANTINE_IDENTITY, RAW_SCHEMA

# Intercom sends Unix seconds; a value this large is almost surely milliseconds (year > 5138).
MILLISECONDS_THRESHOLD = 10**11


@dataclass
class LoadCounts:
    """What one load did.

    Attributes:
        read: Records received from the API (duplicates included).
        inserted: New rows.
        updated: Rows whose content changed.
        unchanged: Rows already stored as they are.
        duplicates: Records repeated within the read (the latest copy was kept).
        quarantined: Records that could not be parsed, stored with the reason instead.
        tombstoned: Rows newly marked deleted (merged, deleted, archived, not found).
    """

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    quarantined: int = 0
    tombstoned: int = 0

    def add(self, other: LoadCounts) -> None:
        """Add another load's counts to these."""
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    @property
    def written(self) -> int:
        """Rows written (inserted, updated or tombstoned)."""
        return self.inserted + self.updated + self.tombstoned


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces, so equal objects give equal text.

    Decimals (Stripe's `*_decimal` fields, which travel as strings) go back to strings.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def now_utc() -> datetime:
    """The load time written beside each row."""
    return datetime.now(UTC)


def event_key(contact_key: str, event_name: str, created_at: int, ordinal: int = 0) -> str:
    """The stable event id: md5 of `contact key | event name | created_at` (docs/warehouse.md).

    A log may hold several events of one contact and name in the same second (sub-second
    times truncated); the second and later copies get `| ordinal` appended, counted the same
    way by the API reader and by `import-events`, so both give the same ids.
    """
    text = f"{contact_key}|{event_name}|{created_at}"
    if ordinal:
        text += f"|{ordinal}"
    return hashlib.md5(text.encode()).hexdigest()


def with_ordinals(
    keys: Iterable[tuple[str, str, int]],
) -> list[int]:
    """The ordinal of each (contact key, name, created_at) among equal ones, in input order."""
    seen: dict[tuple[str, str, int], int] = {}
    ordinals = []
    for key in keys:
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        ordinals.append(ordinal)
    return ordinals


def as_unix_seconds(value: Any) -> tuple[int | None, bool]:
    """An integer Unix-seconds value and whether it looked like milliseconds and was divided.

    Returns (None, False) for a value that is not a number, or not a finite one (`NaN`,
    `Infinity` and `1e400` parse as floats from a JSON answer).
    """
    if isinstance(value, bool) or value is None:
        return None, False
    if isinstance(value, float) and not math.isfinite(value):
        return None, False
    if isinstance(value, int | float):
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        return None, False
    if abs(number) >= MILLISECONDS_THRESHOLD:
        return number // 1000, True
    return number, False


@dataclass
class ObjectRow:
    """One object for an object table."""

    id: str
    updated_at: int | None
    payload: Mapping[str, Any]
    is_deleted: bool = False
    deleted_reason: str | None = None


def quarantine(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    records: Iterable[tuple[str | None, str, Any]],
    sync_id: str,
) -> int:
    """Set aside records that could not be parsed, as (key, reason, payload).

    A record already set aside (same stream, key, reason and payload) keeps its first row,
    which only notes when it was seen again, so the table holds each record once however
    often syncs or imports meet it.

    Returns:
        How many records this call set aside, those set aside before included.
    """
    rows = _quarantine_rows(stream, records)
    if not rows:
        return 0
    table = f"{RAW_SCHEMA}.quarantine"
    same = " and ".join(f"q.{c} is not distinct from r.{c}" for c in QUARANTINE_IDENTITY)
    identity = ", ".join(QUARANTINE_IDENTITY)
    # Read twice in one call (a Stripe object listed and in the feed) counts as seen once.
    update = f"""
        update {table} as q
        set last_seen_sync_id = ?, last_seen_at = ?, times_seen = coalesce(q.times_seen, 1) + 1
        from (select distinct * from _rows) as r
        where {same}
    """
    insert = f"""
        insert into {table} ({identity}, sync_id, loaded_at, last_seen_sync_id, last_seen_at,
            times_seen)
        select distinct {identity}, ?, ?, ?, ?, 1
        from _rows as r
        where not exists (select 1 from {table} as q where {same})
    """
    now = now_utc()
    insert_rows(con, update, [sync_id, now], QUARANTINE_IDENTITY, rows)
    insert_rows(con, insert, [sync_id, now, sync_id, now], QUARANTINE_IDENTITY, rows)
    return len(rows)


def quarantined_already(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    records: list[tuple[str | None, str, Any]],
) -> list[bool]:
    """Whether each record (key, reason, payload) is in the quarantine already, in order."""
    rows = _quarantine_rows(stream, records)
    if not rows:
        return []
    same = " and ".join(f"q.{c} is not distinct from r.{c}" for c in QUARANTINE_IDENTITY)
    table = pa.Table.from_pylist(
        [
            dict(zip(("position", *QUARANTINE_IDENTITY), (i, *row), strict=True))
            for i, row in enumerate(rows)
        ]
    )
    _register(con, "_asked", table)
    try:
        found = con.execute(
            f"""
            select r.position from _asked as r
            where exists (select 1 from {RAW_SCHEMA}.quarantine as q where {same})
            """
        ).fetchall()
    finally:
        con.unregister("_asked")
    known = {position for (position,) in found}
    return [i in known for i in range(len(rows))]


def _quarantine_rows(
    stream: str, records: Iterable[tuple[str | None, str, Any]]
) -> list[tuple[str, str | None, str, str]]:
    # Payloads as stored: text as given, anything else as canonical JSON.
    return [
        (stream, key, reason, payload if isinstance(payload, str) else canonical_json(payload))
        for key, reason, payload in records
    ]


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any],
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
) -> None:
    """Run `sql` (which reads the view `_rows`) over Python rows passed as one Arrow table.

    DuckDB's `executemany` costs milliseconds a row; one Arrow scan does the batch at once.
    """
    table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in rows])
    _register(con, "_rows", table)
    try:
        con.execute(sql, params)
    finally:
        con.unregister("_rows")


def _register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    # DuckDB refuses to register while a result of an earlier execute() is unfinished (a
    # caller's fetchone(), an insert's count): finish it first.
    con.complete()
    con.register(name, table)


def _dedupe_latest(rows: list[ObjectRow]) -> tuple[list[ObjectRow], int]:
    latest: dict[str, ObjectRow] = {}
    for row in rows:
        kept = latest.get(row.id)
        if kept is None or (row.updated_at or 0) >= (kept.updated_at or 0):
            latest[row.id] = row
    return list(latest.values()), len(rows) - len(latest)


def upsert_objects(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[ObjectRow], sync_id: str
) -> LoadCounts:
    """Upsert objects by id into an object table; only new or changed rows are written.

    A row changes when its payload or deletion state differs; `updated_at` never goes back
    (a Stripe list gives `created`, an event the later time of the change). Several copies of
    one id keep the one with the latest `updated_at`. A stored tombstone is revived when the
    object is read again alive (a restored or re-listed object).
    """
    if table not in OBJECT_TABLES:
        raise ValueError(f"{table!r} is not an object table of the raw layer")
    unique, duplicates = _dedupe_latest(rows)
    counts = LoadCounts(read=len(rows), duplicates=duplicates)
    if not unique:
        return counts
    incoming = pa.table(
        {
            "id": [r.id for r in unique],
            "updated_at": pa.array([r.updated_at for r in unique], pa.int64()),
            "payload": [canonical_json(r.payload) for r in unique],
            "is_deleted": [r.is_deleted for r in unique],
            "deleted_reason": pa.array([r.deleted_reason for r in unique], pa.string()),
        }
    )
    _register(con, "_incoming_objects", incoming)
    try:
        changed = f"""
            select i.*, t.id is null as is_new
            from _incoming_objects as i
            left join {RAW_SCHEMA}.{table} as t on t.id = i.id
            where t.id is null
                or t.payload::varchar != i.payload
                or t.is_deleted != i.is_deleted
                or t.deleted_reason is distinct from i.deleted_reason
        """
        con.execute(f"create or replace temp table _changed as {changed}")
        new, total = con.execute(
            "select count(*) filter (where is_new), count(*) from _changed"
        ).fetchone()
        con.execute(
            f"""
            insert or replace into {RAW_SCHEMA}.{table}
            select c.id, greatest(c.updated_at, t.updated_at), c.payload::json, c.is_deleted,
                c.deleted_reason, ?, ?
            from _changed as c
            left join {RAW_SCHEMA}.{table} as t on t.id = c.id
            """,
            [sync_id, now_utc()],
        )
        con.execute("drop table _changed")
    finally:
        con.unregister("_incoming_objects")
    counts.inserted = new
    counts.updated = total - new
    counts.unchanged = len(unique) - total
    return counts


def tombstone(
    con: duckdb.DuckDBPyConnection,
    table: str,
    ids: Iterable[str],
    reason: str,
    sync_id: str,
    updated_at: int | None = None,
) -> int:
    """Mark stored rows deleted, keeping their payload; returns how many changed state."""
    ids = list(ids)
    if not ids:
        return 0
    if table not in OBJECT_TABLES:
        raise ValueError(f"{table!r} is not an object table of the raw layer")
    before = con.execute(
        f"select count(*) from {RAW_SCHEMA}.{table} where id in (select unnest(?)) "
        "and not is_deleted",
        [ids],
    ).fetchone()[0]
    con.execute(
        f"""
        update {RAW_SCHEMA}.{table}
        set is_deleted = true, deleted_reason = ?, sync_id = ?, loaded_at = ?,
            updated_at = coalesce(?, updated_at)
        where id in (select unnest(?)) and not is_deleted
        """,
        [reason, sync_id, now_utc(), updated_at, ids],
    )
    return before


@dataclass
class EventRow:
    """One event for `raw.intercom_events`."""

    id: str
    intercom_event_id: str | None
    contact_id: str | None
    external_id: str | None
    email: str | None
    event_name: str
    created_at: int
    payload: Mapping[str, Any]
    source: str


def upsert_events(con: duckdb.DuckDBPyConnection, rows: list[EventRow], sync_id: str) -> LoadCounts:
    """Insert events not stored yet (by the stable id); an API copy replaces an imported one.

    An imported copy never replaces what the API gave: the API's payload carries its id and
    metadata. Duplicates within the batch count once.
    """
    unique: dict[str, EventRow] = {}
    for row in rows:
        kept = unique.get(row.id)
        if kept is None or (kept.source != "api" and row.source == "api"):
            unique[row.id] = row
    counts = LoadCounts(read=len(rows), duplicates=len(rows) - len(unique))
    if not unique:
        return counts
    values = list(unique.values())
    incoming = pa.table(
        {
            "id": [r.id for r in values],
            "intercom_event_id": pa.array([r.intercom_event_id for r in values], pa.string()),
            "contact_id": pa.array([r.contact_id for r in values], pa.string()),
            "external_id": pa.array([r.external_id for r in values], pa.string()),
            "email": pa.array([r.email for r in values], pa.string()),
            "event_name": [r.event_name for r in values],
            "created_at": pa.array([r.created_at for r in values], pa.int64()),
            "payload": [canonical_json(r.payload) for r in values],
            "source": [r.source for r in values],
        }
    )
    _register(con, "_incoming_events", incoming)
    try:
        # Intercom's event id is unique: an API event stored under another key (a merged lead's
        # event now listed on the user it was merged into) moves to the new key.
        moved = con.execute(
            f"""
            delete from {RAW_SCHEMA}.intercom_events as t
            using _incoming_events as i
            where i.source = 'api' and i.intercom_event_id is not null
                and t.intercom_event_id = i.intercom_event_id and t.id != i.id
            returning 1
            """
        ).fetchall()
        con.execute(
            f"""
            create or replace temp table _changed as
            select i.*, t.id is null as is_new
            from _incoming_events as i
            left join {RAW_SCHEMA}.intercom_events as t on t.id = i.id
            where t.id is null or (t.source != 'api' and i.source = 'api')
            """
        )
        new, total = con.execute(
            "select count(*) filter (where is_new), count(*) from _changed"
        ).fetchone()
        con.execute(
            f"""
            insert or replace into {RAW_SCHEMA}.intercom_events
            select id, intercom_event_id, contact_id, external_id, email, event_name,
                created_at, payload::json, source, ?, ?
            from _changed
            """,
            [sync_id, now_utc()],
        )
        con.execute("drop table _changed")
    finally:
        con.unregister("_incoming_events")
    counts.inserted = new - len(moved)
    counts.updated = total - new + len(moved)
    counts.unchanged = len(values) - total
    return counts


def get_cursor(con: duckdb.DuckDBPyConnection, stream: str) -> str | None:
    """The committed cursor of a stream, or None before its first complete sync."""
    row = con.execute(
        f"select cursor from {RAW_SCHEMA}.sync_state where stream = ?", [stream]
    ).fetchone()
    return row[0] if row else None


def set_cursor(con: duckdb.DuckDBPyConnection, stream: str, cursor: str, sync_id: str) -> None:
    """Commit a stream's cursor (call inside the transaction that stored its data)."""
    con.execute(
        f"insert or replace into {RAW_SCHEMA}.sync_state values (?, ?, ?, ?)",
        [stream, cursor, sync_id, now_utc()],
    )


def clear_cursor(con: duckdb.DuckDBPyConnection, stream: str) -> None:
    """Forget a stream's cursor, so its next sync reads everything."""
    con.execute(f"delete from {RAW_SCHEMA}.sync_state where stream = ?", [stream])
