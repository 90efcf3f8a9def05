"""Acceptance on simple_shop: full syncs, the 90-day window, import-events, incremental reads."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestration.ingest.import_events import import_events
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


def _csv_seconds(cache_dir) -> pd.Series:
    # Straight from the published CSV, floored to whole seconds as Intercom stores them.
    frame = pd.read_csv(simple_shop_csv(cache_dir))
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


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
def test_the_ninety_day_window_import_events_and_incremental_syncs(harness_factory, cache_dir):
    with harness_factory("simple_shop", dirt=False) as h:
        seconds = _csv_seconds(cache_dir)
        before = h.sb.store.window_start()
        reports = h.sync_intercom("s1")
        after = h.sb.store.window_start()
        expected = int((seconds >= before).sum())
        # The sandbox's clock ticks during the read; no event may sit in between.
        assert expected == int((seconds >= after).sum())
        assert h.count("select count(*) from raw.intercom_events") == expected
        assert reports["events"].counts.inserted == expected
        assert expected < EVENTS

        # The original export brings in the older events, matched to the same keys.
        report = import_events(h.con, simple_shop_csv(cache_dir))
        assert report.counts.inserted == EVENTS - expected
        assert report.counts.unchanged == expected
        assert report.keys_unmatched == 0
        assert h.count("select count(*) from raw.intercom_events") == EVENTS
        assert h.count("select count(*) from raw.intercom_events where source = 'api'") == (
            expected
        )
        loaded = {t: h.count(f"select count(*) from raw.{t}") for t in RAW_TABLES}

        # A second sync with no change writes no row anywhere.
        h.sb.admin.advance_clock(2)
        # (Stripe's no-change sync is proven on a small sandbox, where it is cheap.)
        second = h.sync_intercom("s2")
        assert {k: r.counts.written for k, r in second.items()} == dict.fromkeys(second, 0)
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
