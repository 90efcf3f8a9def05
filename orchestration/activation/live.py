"""The live loop: notice users who completed their recommended action (or converted).

Each tick searches Intercom for contacts updated or seen since the cursor, keeps those that
carry a recommendation nextbest wrote (the state table's `nb_next_action`), reads their events
newer than what the warehouse (or an earlier tick) already knows, and asks for a run scoped to
the contacts whose new events include the recommended action or a conversion event.

All times in the cursor are Intercom's own timestamps, never this machine's clock, so a
restarted sensor resumes where it stopped and its run keys repeat exactly on a re-evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from orchestration.activation import store
from orchestration.activation.scope import TRIGGER_TAG, scope_tags
from orchestration.clients.intercom import IntercomClient, IntercomNotFound

log = logging.getLogger(__name__)

ACTION_COMPLETED = "action_completed"
CONVERTED = "converted"


@dataclass
class LiveCursor:
    """Where the sensor stands.

    Attributes:
        since: Latest `updated_at`/`last_seen_at` (Unix seconds) of contacts already examined.
        watermarks: Per contact, the newest event `created_at` already examined, for contacts
            whose events the warehouse has not caught up with yet.
    """

    since: int | None = None
    watermarks: dict[str, int] = field(default_factory=dict)

    def dumps(self) -> str:
        """The cursor as the JSON text Dagster stores."""
        return json.dumps(
            {"since": self.since, "watermarks": dict(sorted(self.watermarks.items()))},
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | None) -> LiveCursor:
        """Parse a stored cursor; None or empty text is a fresh start.

        Raises:
            ValueError: The text is not a cursor this sensor wrote.
        """
        if not text:
            return cls()
        try:
            data = json.loads(text)
            since = data["since"]
            watermarks = {str(k): int(v) for k, v in data.get("watermarks", {}).items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"sensor cursor is not a live-loop cursor: {text[:200]!r}") from exc
        return cls(since=None if since is None else int(since), watermarks=watermarks)


def search_query(since: int, lookback: int) -> dict[str, Any]:
    """Contacts updated or seen after `since - lookback` (search lags behind writes)."""
    start = max(0, since - lookback)
    return {
        "operator": "OR",
        "value": [
            {"field": "updated_at", "operator": ">", "value": start},
            {"field": "last_seen_at", "operator": ">", "value": start},
        ],
    }


def contact_time(contact: Mapping[str, Any]) -> int:
    """The later of a contact's `updated_at` and `last_seen_at` (0 when neither is set)."""
    times = [contact.get("updated_at"), contact.get("last_seen_at")]
    return max((int(t) for t in times if isinstance(t, int | float)), default=0)


def event_time(event: Mapping[str, Any]) -> int | None:
    """An event's `created_at` in Unix seconds, or None when it is not a finite number."""
    value = event.get("created_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


def completions(
    new_events: Mapping[str, Iterable[Mapping[str, Any]]],
    outstanding: Mapping[str, str],
    conversion_events: Iterable[str],
) -> dict[str, set[str]]:
    """Contacts whose new events complete their recommended action or convert, with why.

    Args:
        new_events: Per contact, the events not examined before.
        outstanding: Per contact, the action Intercom currently shows.
        conversion_events: Event names that mean the user converted.
    """
    conversions = set(conversion_events)
    found: dict[str, set[str]] = {}
    for contact_id, events in new_events.items():
        names = {e.get("event_name") for e in events}
        reasons = set()
        if outstanding.get(contact_id) in names:
            reasons.add(ACTION_COMPLETED)
        if names & conversions:
            reasons.add(CONVERTED)
        if reasons:
            found[contact_id] = reasons
    return found


def run_key(before: LiveCursor, contact_ids: Iterable[str]) -> str:
    """A run key made from the cursor and the contacts: the same tick yields the same key."""
    ids = ",".join(sorted(contact_ids))
    digest = hashlib.sha1(f"{before.dumps()}|{ids}".encode()).hexdigest()[:16]
    return f"live-{before.since}-{digest}"


@dataclass
class Tick:
    """What one evaluation found and decided."""

    cursor: LiveCursor
    contacts_seen: int = 0
    contacts_outstanding: int = 0
    events_read: int = 0
    events_unreadable: int = 0
    contacts_without_id: int = 0
    triggers: dict[str, set[str]] = field(default_factory=dict)
    deferred: int = 0
    skip_reason: str | None = None
    run_key: str | None = None

    def tags(self) -> dict[str, str]:
        """Run tags of the scoped run: contacts and why."""
        reasons = sorted({r for rs in self.triggers.values() for r in rs})
        return {**scope_tags(self.triggers), TRIGGER_TAG: ",".join(reasons)}

    def numbers(self) -> str:
        """One line for the sensor's log."""
        return (
            f"{self.contacts_seen} contacts updated or seen, {self.contacts_outstanding} with an "
            f"outstanding recommendation, {self.events_read} new events, "
            f"{len(self.triggers)} to update, {self.deferred} left for the next tick, "
            f"{self.events_unreadable} events without a readable time skipped, "
            f"{self.contacts_without_id} contacts without an id skipped"
        )


def warehouse_view(
    con: duckdb.DuckDBPyConnection,
) -> tuple[int | None, dict[str, str], dict[str, int]]:
    """From the warehouse: the latest contact time, outstanding actions, newest known events.

    Returns:
        (latest `updated_at`/`last_seen_at` of the raw contacts or None, action shown per
        contact, newest event `created_at` per contact among the raw events loaded before the
        contact was last written).
    """
    outstanding: dict[str, str] = {}
    if _exists(con, store.SCHEMA, "intercom_attribute_state"):
        outstanding = {
            cid: json.loads(value)
            for cid, value in con.execute(
                f"""select contact_id, value from {store.STATE_TABLE}
                where attribute = 'nb_next_action' and value is not null"""
            ).fetchall()
        }
    latest = None
    known: dict[str, int] = {}
    if _exists(con, "raw", "intercom_contacts"):
        latest = con.execute(
            """select max(greatest(
                coalesce(updated_at, 0),
                coalesce(try_cast(payload ->> 'last_seen_at' as bigint), 0)))
            from raw.intercom_contacts"""
        ).fetchone()[0]
    if outstanding and _exists(con, "raw", "intercom_events"):
        # Only events loaded before the contact's last write-back count as known: a run scoped
        # to other contacts may load a contact's completed action and write nothing for it, and
        # that event must still reach the sensor as new.
        known = dict(
            con.execute(
                f"""with written as (
                    select contact_id, max(written_at) as written_at from {store.STATE_TABLE}
                    where contact_id in (select unnest(?::varchar[])) group by contact_id
                )
                select e.contact_id, max(e.created_at) from raw.intercom_events as e
                join written as w on w.contact_id = e.contact_id and e.loaded_at <= w.written_at
                group by e.contact_id""",
                [sorted(outstanding)],
            ).fetchall()
        )
    return latest, outstanding, known


def evaluate(
    cursor: LiveCursor,
    client: IntercomClient,
    *,
    latest_known: int | None,
    outstanding: Mapping[str, str],
    known_events: Mapping[str, int],
    conversion_events: Iterable[str],
    lookback: int,
    server_now: Callable[[], int] | None = None,
) -> Tick:
    """One tick: search, read new events of outstanding contacts, decide whom to update.

    The new cursor's `since` is the latest contact time seen (Intercom's clock). Watermarks are
    kept only while they are ahead of the warehouse, so the cursor stays small.

    A contact updated in the server's current second is left for the next tick: the run's
    incremental contact read stops at the second before it starts, so it would not read that
    contact yet, and the run would score the user without the completed action.

    Args:
        cursor: Where the previous tick stopped.
        client: The Intercom client to search and list events with.
        latest_known: The warehouse's newest contact time, where a fresh cursor starts.
        outstanding: Per contact, the action Intercom currently shows.
        known_events: Per contact, the newest event `created_at` in the warehouse.
        conversion_events: Event names that mean the user converted.
        lookback: Seconds the search reaches back before the cursor.
        server_now: The server's current time (read after the search); None leaves no
            contact for later.
    """
    since = cursor.since if cursor.since is not None else latest_known
    if since is None:
        return Tick(cursor=cursor, skip_reason="no contacts in the warehouse yet: run a sync")
    tick = Tick(cursor=LiveCursor(since=since, watermarks=dict(cursor.watermarks)))
    candidates: dict[str, Mapping[str, Any]] = {}
    newest = since
    for contact in client.search_contacts(search_query(since, lookback)):
        contact_id = contact.get("id") if isinstance(contact, Mapping) else None
        if not isinstance(contact_id, str) or not contact_id:
            tick.contacts_without_id += 1
            log.warning("search answered a contact without an id, skipped: %.200r", contact)
            continue
        candidates[contact_id] = contact
    now = server_now() if server_now is not None else None
    later: list[int] = []
    for contact_id, contact in list(candidates.items()):
        updated = contact.get("updated_at")
        if now is not None and isinstance(updated, int | float) and updated >= now:
            later.append(int(updated))
            if contact_id in outstanding:
                tick.deferred += 1
            del candidates[contact_id]
            continue
        newest = max(newest, contact_time(contact))
    if later:
        # The next search must find the contacts left for later again.
        newest = min(newest, min(later) - 1)
    tick.contacts_seen = len(candidates) + len(later)
    new_events: dict[str, list[Mapping[str, Any]]] = {}
    for contact_id in sorted(candidates):
        if contact_id not in outstanding:
            continue
        tick.contacts_outstanding += 1
        mark = max(cursor.watermarks.get(contact_id, 0), known_events.get(contact_id) or 0)
        seen = candidates[contact_id].get("last_seen_at")
        if isinstance(seen, int | float) and seen <= mark:
            # Not active since its newest known event: our own write-back bumped `updated_at`,
            # the user did nothing, so its events need no request.
            continue
        fresh = []
        times = []
        try:
            # Newest first: stop at the first event already examined.
            for event in client.list_events(intercom_user_id=contact_id):
                created = event_time(event)
                if created is None:
                    # Cannot be placed against the watermark: counted and logged, and the
                    # older events listed after it are still read.
                    tick.events_unreadable += 1
                    log.warning(
                        "contact %s: event %r has created_at %r, not Unix seconds; skipped",
                        contact_id,
                        event.get("id") or event.get("event_name"),
                        event.get("created_at"),
                    )
                    continue
                if created <= mark:
                    break
                fresh.append(event)
                times.append(created)
        except IntercomNotFound:
            continue
        if fresh:
            new_events[contact_id] = fresh
            tick.events_read += len(fresh)
            tick.cursor.watermarks[contact_id] = max(times)
    tick.triggers = completions(new_events, outstanding, conversion_events)
    tick.cursor.since = newest
    tick.cursor.watermarks = {
        cid: mark
        for cid, mark in tick.cursor.watermarks.items()
        if mark > (known_events.get(cid) or 0) and cid in outstanding
    }
    if tick.triggers:
        tick.run_key = run_key(cursor, tick.triggers)
    else:
        tick.skip_reason = "no contact completed its recommended action or converted"
    return tick


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
        > 0
    )
