"""`raw.quarantine` holds each record set aside once, however often it is met again."""

from __future__ import annotations

from pathlib import Path

import duckdb

from orchestration.ingest.import_events import import_events
from orchestration.ingest.load import quarantine, set_cursor
from orchestration.ingest.stripe import _set_aside_last_sync
from orchestration.warehouse import ensure_raw_tables, warehouse


def _rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "select stream, record_key, reason, payload, sync_id, last_seen_sync_id, times_seen "
        "from raw.quarantine order by stream, record_key nulls first, payload"
    ).fetchall()


def test_a_record_set_aside_again_keeps_its_first_row_and_notes_the_repeat(tmp_path: Path):
    with warehouse(tmp_path / "w.duckdb") as con:
        first = [(None, "missing id", {"b": 2, "a": 1}), ("c-1", "bad time", {"id": "c-1"})]
        assert quarantine(con, "intercom_contacts", first, "s1") == 2
        # Met again: the same two (a payload with its keys in another order is the same
        # record), plus c-1 with another payload and another stream's record.
        again = [
            ("c-1", "bad time", {"id": "c-1"}),
            (None, "missing id", {"a": 1, "b": 2}),
            ("c-1", "bad time", {"id": "c-1", "x": 1}),
        ]
        assert quarantine(con, "intercom_contacts", again, "s2") == 3
        assert quarantine(con, "stripe_charges", [("ch_1", "bad time", "text")], "s2") == 1
        rows = _rows(con)
    assert rows == [
        ("intercom_contacts", None, "missing id", '{"a":1,"b":2}', "s1", "s2", 2),
        ("intercom_contacts", "c-1", "bad time", '{"id":"c-1","x":1}', "s2", "s2", 1),
        ("intercom_contacts", "c-1", "bad time", '{"id":"c-1"}', "s1", "s2", 2),
        ("stripe_charges", "ch_1", "bad time", "text", "s2", "s2", 1),
    ]


def test_the_same_record_twice_in_one_call_is_stored_once_and_counted_as_given(tmp_path: Path):
    with warehouse(tmp_path / "w.duckdb") as con:
        record = ("cus_1", "created is not Unix seconds: 'x'", {"id": "cus_1"})
        assert quarantine(con, "stripe_customers", [record, record], "s1") == 2
        assert _rows(con) == [
            ("stripe_customers", "cus_1", record[1], '{"id":"cus_1"}', "s1", "s1", 1)
        ]


def test_re_importing_a_file_sets_its_bad_rows_aside_once_and_still_counts_them(tmp_path: Path):
    export = tmp_path / "old.csv"
    export.write_text(
        "user_id,event,timestamp\n"
        "u1,main,2020-01-01T10:00:00Z\n"
        "u2,,2020-01-01T10:00:00Z\n"  # line 3: no event name
        "u3,cart,soon\n"  # line 4: no time
    )
    with warehouse(tmp_path / "w.duckdb") as con:
        first = import_events(con, export, sync_id="i1")
        second = import_events(con, export, sync_id="i2")
        rows = con.execute(
            "select record_key, reason, sync_id, last_seen_sync_id, times_seen "
            "from raw.quarantine order by record_key"
        ).fetchall()
    assert (first.counts.quarantined, second.counts.quarantined) == (2, 2)
    assert "2 quarantined" in second.summary()
    assert rows == [
        ("old.csv:3", "empty event name", "i1", "i2", 2),
        ("old.csv:4", "unreadable time 'soon'", "i1", "i2", 2),
    ]


OLD_QUARANTINE = """
    create table raw.quarantine (
        stream varchar not null, record_key varchar, reason varchar not null,
        payload varchar, sync_id varchar not null, loaded_at timestamptz not null
    )
"""


def test_a_warehouse_of_an_earlier_version_keeps_working_and_its_repeats_are_folded(
    tmp_path: Path,
):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute(OLD_QUARANTINE)
    # The log an earlier version wrote: one record set aside by three syncs, another once.
    con.execute(
        """
        insert into raw.quarantine values
            ('intercom_events', 'c-1', 'event: missing event_name', '{}', 's2',
                '2024-01-02 00:00:00+00'),
            ('intercom_events', 'c-1', 'event: missing event_name', '{}', 's1',
                '2024-01-01 00:00:00+00'),
            ('intercom_events', 'c-1', 'event: missing event_name', '{}', 's3',
                '2024-01-03 00:00:00+00'),
            ('stripe_refunds', null, 'missing id', null, 's1', '2024-01-01 00:00:00+00')
        """
    )
    con.close()
    with warehouse(path) as con:
        assert _rows(con) == [
            ("intercom_events", "c-1", "event: missing event_name", "{}", "s1", "s3", 3),
            ("stripe_refunds", None, "missing id", None, "s1", "s1", 1),
        ]
        first_seen = con.execute("select min(loaded_at)::varchar from raw.quarantine").fetchone()
        quarantine(con, "intercom_events", [("c-1", "event: missing event_name", "{}")], "s4")
    with warehouse(path) as con:  # opening it again changes nothing
        ensure_raw_tables(con)
        assert _rows(con)[0] == (
            "intercom_events",
            "c-1",
            "event: missing event_name",
            "{}",
            "s1",
            "s4",
            4,
        )
        assert con.execute("select min(loaded_at)::varchar from raw.quarantine").fetchone() == (
            first_seen
        )
    assert first_seen[0].startswith("2024-01-01 00:00:00")


def test_only_a_stripe_record_first_set_aside_by_the_last_sync_asks_for_a_re_list(
    tmp_path: Path,
):
    with warehouse(tmp_path / "w.duckdb") as con:
        record = [("ch_1", "created is not Unix seconds: 'x'", {"id": "ch_1"})]
        quarantine(con, "stripe_charges", record, "s1")
        set_cursor(con, "stripe_charges", "{}", "s1")
        assert _set_aside_last_sync(con, "stripe_charges") == 1
        # s2 meets the same record again (an incremental sync's overlap, after the re-list):
        # the row keeps s1 as its first sync, and it had its re-list.
        quarantine(con, "stripe_charges", record, "s2")
        set_cursor(con, "stripe_charges", "{}", "s2")
        assert _set_aside_last_sync(con, "stripe_charges") == 0
        # The record served otherwise broken is a new one.
        changed = [("ch_1", "created is not Unix seconds: 'y'", {"id": "ch_1"})]
        quarantine(con, "stripe_charges", record + changed, "s2b")
        set_cursor(con, "stripe_charges", "{}", "s2b")
        assert _set_aside_last_sync(con, "stripe_charges") == 1
        # s3 does not meet it: nothing was set aside by the last sync.
        set_cursor(con, "stripe_charges", "{}", "s3")
        assert _set_aside_last_sync(con, "stripe_charges") == 0
