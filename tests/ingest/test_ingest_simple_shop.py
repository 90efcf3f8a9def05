"""Acceptance on simple_shop: full syncs, the 90-day window, import-events, incremental reads."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from sandbox.datasets import simple_shop_csv

CONTACTS = 3_751
EVENTS = 32_283
RAW_TABLES = (
    "intercom_contacts",
    "intercom_companies",
    "intercom_contact_companies",
    "intercom_events",
    "intercom_event_coverage",
    "quarantine",
)


def _csv_frame(cache_dir) -> pd.DataFrame:
    # Straight from the published CSV, floored to whole seconds as Intercom stores them.
    frame = pd.read_csv(simple_shop_csv(cache_dir), dtype={"user_id": str})
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame["second"] = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return frame


def _coverage(h) -> dict[str, int]:
    return dict(
        h.con.execute(
            "select external_id, complete_from from raw.intercom_event_coverage"
        ).fetchall()
    )


@pytest.mark.slow
def test_a_full_sync_with_the_event_window_off_lands_every_contact_and_event(harness_factory):
    with harness_factory("simple_shop", event_window_days=0) as h:
        reports = h.sync_intercom("s1")
        assert h.count("select count(*) from raw.intercom_contacts") == CONTACTS
        assert h.count("select count(*) from raw.intercom_events") == EVENTS
        assert reports["events"].counts.inserted == EVENTS
        assert h.count("select count(*) from raw.quarantine") == 0
        # The API served events older than 90 days, so every history is complete from sign-up.
        assert (
            h.count(
                """
            select count(*) from raw.intercom_event_coverage as v
            join raw.intercom_contacts as c on c.id = v.contact_id
            where v.complete_from > (c.payload->>'created_at')::bigint
            """
            )
            == 0
        )


@pytest.mark.slow
def test_the_ninety_day_window_import_events_and_incremental_syncs(
    harness_factory, cache_dir, monkeypatch
):
    with harness_factory("simple_shop", dirt=False) as h:
        frame = _csv_frame(cache_dir)
        seconds = frame["second"]
        first = frame.groupby("user_id")["second"].min()
        before = h.sb.store.window_start()
        reports = h.sync_intercom("s1")
        after = h.sb.store.window_start()
        expected = int((seconds >= before).sum())
        # The sandbox's clock ticks during the read; no event may sit in between.
        assert expected == int((seconds >= after).sum())
        assert h.count("select count(*) from raw.intercom_events") == expected
        assert reports["events"].counts.inserted == expected
        assert expected < EVENTS

        # Users who started before the window have history the API did not serve; the report
        # says how many, and where to get it.
        older = first[first < before]
        assert 0 < len(older) < CONTACTS
        events = reports["events"]
        assert events.metadata()["event_window_days"] == 90
        assert events.metadata()["contacts_history_incomplete"] == len(older)
        note = events.notes["history_note"]
        assert "only the last 90 days" in note
        assert f"{len(older):,} contacts" in note
        assert "nextbest import-events" in note
        assert note in events.summary()
        # Each of them is complete from the window's start (the second the read began),
        # everyone else from their first event.
        coverage = _coverage(h)
        assert sorted(coverage) == sorted(first.index)
        assert all(before - 2 <= coverage[user] <= after + 1 for user in older.index)
        newer = first[first >= before]
        assert {user: coverage[user] for user in newer.index} == newer.to_dict()

        # The original export, through the command line, brings in the older events, matched
        # to the same keys, and completes every history from its first event.
        monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(h.path))
        h.con.close()
        result = CliRunner().invoke(app, ["import-events", str(simple_shop_csv(cache_dir))])
        h.reopen()
        assert result.exit_code == 0, result.output
        printed = " ".join(result.output.split())
        assert f"{EVENTS - expected:,} events inserted, {expected:,} already stored" in printed
        assert "0 users matched to no contact" in printed
        assert f"now holds {EVENTS:,} events" in printed
        assert h.count("select count(*) from raw.intercom_events") == EVENTS
        assert h.count("select count(*) from raw.intercom_events where source = 'api'") == (
            expected
        )
        assert _coverage(h) == first.to_dict()
        loaded = {t: h.count(f"select count(*) from raw.{t}") for t in RAW_TABLES}

        # A second sync with no change writes no row anywhere.
        h.sb.admin.advance_clock(2)
        # (Stripe's no-change sync is proven on a small sandbox, where it is cheap.)
        second = h.sync_intercom("s2")
        assert {k: r.counts.written for k, r in second.items()} == dict.fromkeys(second, 0)
        assert second["events"].metadata()["contacts_history_incomplete"] == 0
        assert "history_note" not in second["events"].notes
        for table in RAW_TABLES:
            assert h.count(f"select count(*) from raw.{table} where sync_id = 's2'") == 0, table
            assert h.count(f"select count(*) from raw.{table}") == loaded[table], table

        # Ten new events for three contacts: only those three are read, exactly ten land.
        store = h.sb.store
        chosen = store.contacts.ids[10:13]
        now = store.now()
        for k in range(10):
            h.sb.admin.add_event(f"new_step_{k % 4}", now - 100 + k, contact_id=chosen[k % 3])
        h.sb.admin.advance_clock(2)
        third = h.sync_intercom("s3")
        assert third["contacts"].counts.updated == 3
        assert third["events"].notes["contacts_read"] == 3
        assert third["events"].counts.inserted == 10
        assert h.count("select count(*) from raw.intercom_events") == EVENTS + 10
        assert sorted(
            r[0]
            for r in h.con.execute(
                "select distinct contact_id from raw.intercom_events where sync_id = 's3'"
            ).fetchall()
        ) == sorted(chosen)
