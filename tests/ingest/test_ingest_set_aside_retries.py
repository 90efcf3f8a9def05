"""Intercom records that stay unreadable are retried once, then left in the quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import httpx

from orchestration.clients.intercom import IntercomClient
from orchestration.ingest.intercom import (
    StreamReport,
    _ContactEvents,
    _flush_events,
    contacts_needing_events,
    sync_contacts,
)
from orchestration.ingest.settings import IngestSettings
from orchestration.warehouse import warehouse

T = 1_700_000_000


def _quarantine(con: duckdb.DuckDBPyConnection, stream: str) -> list[tuple]:
    return con.execute(
        "select record_key, reason, sync_id, last_seen_sync_id, times_seen from raw.quarantine "
        "where stream = ? order by sync_id",
        [stream],
    ).fetchall()


def _contacts_client(listed: list[list[dict]]) -> IntercomClient:
    # The search finds nothing changed; the id listing serves the next of `listed`.
    pages = iter(listed)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/contacts/search":
            return httpx.Response(200, json={"type": "list", "data": [], "pages": {}})
        return httpx.Response(200, json={"type": "list", "data": next(pages), "pages": {}})

    return IntercomClient(
        "https://api.example.test", "t", transport=httpx.MockTransport(handler), max_attempts=1
    )


def test_a_listed_contact_that_stays_unreadable_is_not_set_aside_again(tmp_path: Path):
    ok = {"type": "contact", "id": "ok", "updated_at": T}
    bad = {"type": "contact", "id": "bad", "updated_at": "2024-03-01T12:00:00Z"}
    changed = bad | {"name": "Lee"}
    whole = {"type": "contact", "id": "bad", "updated_at": T - 5}
    settings = IngestSettings()
    with warehouse(tmp_path / "w.duckdb") as con:
        # s1 reads in full (one listing); each later sync is incremental (search, listing).
        client = _contacts_client([[ok, bad], [ok, bad], [ok, changed], [ok, whole]])
        reports = [
            sync_contacts(client, con, sync_id=s, settings=settings, sync_start=T + 100)
            for s in ("s1", "s2", "s3", "s4")
        ]
        stored = con.execute("select id from raw.intercom_contacts order by id").fetchall()
        kept = _quarantine(con, "intercom_contacts")
    reason = "updated_at is not Unix seconds: '2024-03-01T12:00:00Z'"
    assert [r.counts.quarantined for r in reports] == [1, 0, 1, 0]
    assert [r.notes.get("contacts_left_set_aside") for r in reports] == [None, 1, 0, 0]
    # Changed, it is read again (and set aside again); served whole, it lands.
    assert kept == [("bad", reason, "s1", "s1", 1), ("bad", reason, "s3", "s3", 1)]
    assert stored == [("bad",), ("ok",)]
    assert reports[3].notes["contacts_recovered"] == 1


def _store_contact(con: duckdb.DuckDBPyConnection, updated_at: int) -> None:
    payload = {"id": "c-1", "created_at": T - 1000, "updated_at": updated_at}
    con.execute(
        "insert or replace into raw.intercom_contacts values ('c-1', ?, ?, false, null, 's', "
        "now())",
        [updated_at, json.dumps(payload)],
    )


def test_a_contact_whose_event_stays_unreadable_is_read_again_once(tmp_path: Path):
    good = {"id": "e1", "event_name": "main", "created_at": T - 50}
    broken = {"id": "e2", "created_at": T - 40}  # no event_name
    settings = IngestSettings()
    with warehouse(tmp_path / "w.duckdb") as con:
        _store_contact(con, T - 100)

        def read(sync_id: str, events: list[dict]) -> StreamReport:
            (contact,) = contacts_needing_events(con)
            report = StreamReport("intercom_events")
            _flush_events(con, [_ContactEvents(contact, events)], report, sync_id, T, settings)
            return report

        first = read("s1", [good, broken])
        assert [c.contact_id for c in contacts_needing_events(con)] == ["c-1"]
        # The retry is served the same: set aside again, counted, and not asked for again.
        second = read("s2", [good, broken])
        assert contacts_needing_events(con) == []
        assert (first.counts.quarantined, second.counts.quarantined) == (1, 1)
        assert _quarantine(con, "intercom_events") == [
            ("c-1", "event: missing event_name", "s1", "s2", 2)
        ]
        # The contact changes and its event is served otherwise broken: a new record, so it
        # is read once more; then served whole, it lands and nothing is left to read.
        _store_contact(con, T - 10)
        read("s3", [good, broken | {"metadata": {"a": 1}}])
        assert [c.contact_id for c in contacts_needing_events(con)] == ["c-1"]
        last = read("s4", [good, broken | {"event_name": "cart"}])
        assert contacts_needing_events(con) == []
        assert (last.counts.quarantined, last.counts.inserted) == (0, 1)
        stored = con.execute("select intercom_event_id from raw.intercom_events order by 1")
        assert stored.fetchall() == [("e1",), ("e2",)]
