"""Intercom reads against the sandbox (real HTTP): the failure modes that touch reading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestration.clients.intercom import IntercomError
from orchestration.ingest import intercom as sync
from orchestration.ingest.import_events import import_events
from orchestration.ingest.intercom import IngestError
from orchestration.warehouse import connect

CHILD = Path(__file__).with_name("sync_in_child.py")
CONTACT_COLUMNS = "id, updated_at, payload, is_deleted, deleted_reason"
EVENT_COLUMNS = (
    "id, intercom_event_id, contact_id, external_id, email, event_name, created_at, payload, source"
)

# Three full scroll pages of 50 and a short one: a reader that stops early, or after one
# page, cannot pass.
COMPANIES = 120
SCROLL_PAGE = 50


def _company_ids(h) -> list[str]:
    return sorted(c["id"] for c in h.sb.store.companies)


def _scroll_requests(h) -> list[dict]:
    """The companies scroll requests the sandbox received, in order, as it recorded them."""
    return [r for r in h.sb.state.request_log if r["path"] == "/companies/scroll"]


def _last_pass(requests: list[dict]) -> list[dict]:
    """The requests of the last scroll that started: from its first page to its end."""
    starts = [
        k for k, r in enumerate(requests) if "scroll_param" not in r["query"] and r["status"] == 200
    ]
    return requests[starts[-1] :]


def _assert_companies_land_once(h, requests: list[dict]) -> None:
    # The scroll that completed served every company once, from the start, on several pages,
    # and ended on an empty page; the raw table holds exactly the sandbox's companies.
    final = _last_pass(requests)
    assert final[0]["note"]["from_position"] == 0
    served = [company for r in final for company in r["note"]["served"]]
    assert sorted(served) == _company_ids(h)
    assert len(served) == len(set(served)) == COMPANIES
    pages = [len(r["note"]["served"]) for r in final]
    assert pages == [SCROLL_PAGE, SCROLL_PAGE, COMPANIES - 2 * SCROLL_PAGE, 0]
    assert all(r["status"] == 200 for r in final)
    rows = h.con.execute("select id, payload from raw.intercom_companies").fetchall()
    assert sorted(r[0] for r in rows) == _company_ids(h)
    by_id = {c["id"]: c for c in h.sb.store.companies}
    assert all(json.loads(payload) == by_id[key] for key, payload in rows)


def test_a_full_read_lands_every_contact_company_link_and_event(harness_factory):
    with harness_factory() as h:
        reports = h.sync_intercom("s1")
        store = h.sb.store
        assert h.count("select count(*) from raw.intercom_contacts") == store.live_count()
        assert sorted(
            r[0] for r in h.con.execute("select id from raw.intercom_companies").fetchall()
        ) == _company_ids(h)
        visible = sum(len(store.contact_events(i)) for i in range(len(store.contacts.ids)))
        assert h.count("select count(*) from raw.intercom_events") == visible
        assert reports["events"].counts.inserted == visible
        assert h.count("select count(*) from raw.intercom_event_coverage") == store.live_count()
        # One link per contact with a company (the sandbox gives each contact one).
        linked = sum(1 for c in store.contacts.company.tolist() if c >= 0)
        assert h.count("select count(*) from raw.intercom_contact_companies") == linked
        # Every request of the sync named the API version; the sandbox, strict as Intercom
        # may be, refuses one that does not.
        sent = [r for r in h.sb.state.request_log if r["vendor"] == "intercom"]
        assert len(sent) > len(store.contacts.ids)
        assert {r["intercom_version"] for r in sent} == {"2.14"}
        assert {r["status"] for r in sent} == {200}
        bare = httpx.get(
            f"{h.sb.intercom_url}/contacts",
            headers={"Authorization": f"Bearer {h.sb.intercom_token}"},
        )
        assert bare.status_code == 400
        assert bare.json()["errors"][0]["code"] == "intercom_version_invalid"


def test_scroll_expiry_restarts_the_scroll_and_lands_each_company_once(harness_factory):
    # 1: the scroll dies after its first page; a new one is refused until the old one idles out.
    with harness_factory(n_companies=COMPANIES) as h:
        h.sb.admin.set_faults("scroll_expiry", scroll_idle_seconds=1)
        waits = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            h.sb.admin.set_faults(None, scroll_idle_seconds=1)  # the pause was a one-off
            time.sleep(seconds)

        with h.intercom() as client:
            report = sync.sync_companies(
                client, h.con, sync_id="s1", settings=h.settings, sleep=sleep
            )
        requests = _scroll_requests(h)
        statuses = [r["status"] for r in requests]
        # Page 1, its continuation found expired, a new scroll refused while the old one is
        # held, then (after the wait) a whole new scroll from the first company.
        assert statuses[:3] == [200, 404, 400]
        assert "scroll_param" in requests[1]["query"]
        assert "scroll_param" not in requests[2]["query"]
        assert len(waits) == 1
        _assert_companies_land_once(h, requests[3:])
        assert report.notes["scroll_restarts"] >= 1
        assert report.metadata()["rows_inserted"] == COMPANIES


def test_the_scroll_ends_on_an_empty_page_not_on_a_repeated_scroll_param(harness_factory):
    # 2: every page carries the same scroll_param; only the empty page ends the scroll.
    with harness_factory(n_companies=COMPANIES) as h:
        with h.intercom() as client:
            sync.sync_companies(client, h.con, sync_id="s1", settings=h.settings)
        requests = _scroll_requests(h)
        assert len(requests) == 4  # three pages with companies, one empty: nothing after it
        params = {r["note"]["scroll_param"] for r in requests}
        assert len(params) == 1
        assert [r["query"].get("scroll_param") for r in requests[1:]] == [*params] * 3
        _assert_companies_land_once(h, requests)


def test_a_scroll_that_never_completes_fails_loudly_and_writes_nothing(harness_factory):
    with harness_factory() as h:
        h.sb.admin.set_faults("scroll_expiry", scroll_idle_seconds=0.2)
        settings = h.settings.model_copy(
            update={"scroll_restarts": 2, "scroll_busy_wait_seconds": 0.3}
        )
        with h.intercom() as client, pytest.raises(IngestError, match="did not complete"):
            sync.sync_companies(client, h.con, sync_id="s1", settings=settings)
        assert h.count("select count(*) from raw.intercom_companies") == 0


def test_no_companies_is_zero_rows_after_a_single_call(harness_factory):
    # 3: the first page is empty.
    with harness_factory() as h:
        h.sb.admin.set_faults("no_companies")
        with h.intercom() as client:
            report = sync.sync_companies(client, h.con, sync_id="s1", settings=h.settings)
        assert h.count("select count(*) from raw.intercom_companies") == 0
        assert report.client["requests"] == 1
        assert [(r["query"], r["status"]) for r in _scroll_requests(h)] == [({}, 200)]


def test_a_5xx_mid_scroll_restarts_the_whole_scroll(harness_factory):
    # 4: page 2 answers 500 and the scroll is lost (a retry of it would find nothing).
    with harness_factory(n_companies=COMPANIES) as h:
        h.sb.admin.set_faults("scroll_5xx", scroll_idle_seconds=1)

        def sleep(seconds: float) -> None:
            h.sb.admin.set_faults(None, scroll_idle_seconds=1)
            time.sleep(seconds)

        with h.intercom() as client:
            report = sync.sync_companies(
                client, h.con, sync_id="s1", settings=h.settings, sleep=sleep
            )
        requests = _scroll_requests(h)
        statuses = [r["status"] for r in requests]
        assert statuses[:2] == [200, 500]
        assert "scroll_param" in requests[1]["query"]
        # The broken page is not asked again: the next request starts a new scroll.
        assert "scroll_param" not in requests[2]["query"]
        assert statuses.count(500) == 1
        _assert_companies_land_once(h, requests[2:])
        assert report.notes["scroll_restarts"] >= 1
        assert report.client.get("status_500", 0) == 1


def test_duplicates_across_pages_land_once_and_are_counted(harness_factory):
    # 5: every contacts page repeats the last item of the previous one.
    with harness_factory() as h:
        h.sb.admin.set_faults("duplicates")
        settings = h.settings.model_copy(update={"contacts_per_page": 40})
        with h.intercom() as client:
            report = sync.sync_contacts(client, h.con, sync_id="s1", settings=settings)
        live = h.sb.store.live_count()
        assert h.count("select count(*) from raw.intercom_contacts") == live
        assert report.counts.duplicates > 0
        assert report.counts.read == live + report.counts.duplicates


def test_incremental_windows_read_a_changed_contact_exactly_once(harness_factory):
    # 6: with no look-back, the next window starts one second after the last one ended.
    with harness_factory() as h:
        settings = {"lookback_seconds": 0}
        h.sync_intercom("s1", **settings)
        contact = h.sb.store.contacts.ids[3]
        h.sb.admin.add_event("opened_report", h.sb.store.now() - 5, contact_id=contact)
        h.sb.admin.advance_clock(2)
        second = h.sync_intercom("s2", **settings)
        assert second["contacts"].notes["mode"] == "incremental"
        assert second["contacts"].counts.read == 1
        assert second["contacts"].counts.updated == 1
        assert second["events"].notes["contacts_read"] == 1
        third = h.sync_intercom("s3", **settings)
        assert third["contacts"].counts.read == 0
        assert third["events"].notes["contacts_read"] == 0


def _assert_raw_equals_store(h) -> None:
    """Contacts, companies and events in the raw layer are exactly what the sandbox holds."""
    store = h.sb.store
    live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
    contacts = dict(h.con.execute("select id, payload from raw.intercom_contacts").fetchall())
    assert {k: json.loads(v) for k, v in contacts.items()} == {
        store.contacts.ids[i]: store.render_contact(i) for i in live
    }
    companies = dict(h.con.execute("select id, payload from raw.intercom_companies").fetchall())
    assert {k: json.loads(v) for k, v in companies.items()} == {c["id"]: c for c in store.companies}
    events = h.con.execute(
        "select intercom_event_id, contact_id, event_name, created_at from raw.intercom_events"
    ).fetchall()
    assert sorted(events) == sorted(
        (event_id, store.contacts.ids[i], name, created)
        for i in live
        for name, created, _, event_id in store.contact_events(i)
    )


def test_rate_limit_headers_throttle_and_back_off_through_a_whole_sync(harness_factory):
    # 7: remaining 1 with a reset ahead, 429 with a past reset, 429 with no reset, 200, over
    # and over, through a full sync (a reset 1 s ahead rather than 7 keeps it short).
    with harness_factory(users=12) as h:
        h.sb.admin.set_faults("rate_limit_headers", rate_limit_reset_seconds=1)
        reports = h.sync_intercom("s1")
        _assert_raw_equals_store(h)
        answered = [r for r in h.sb.state.request_log if r["vendor"] == "intercom"]
        # The script hands its steps out in arrival order: ok, 429, 429, ok, ...
        expected_429 = sum(1 for k in range(len(answered)) if k % 4 in (1, 2))
        refused = [r for r in answered if r["status"] == 429]
        assert len(refused) == expected_429 > 0
        assert all(r["status"] in (200, 429) for r in answered)
        # Every refused request was sent again until it succeeded.
        for k, request in enumerate(answered):
            if request["status"] == 429:
                key = (request["method"], request["path"], request["query"])
                assert any(
                    (r["method"], r["path"], r["query"]) == key and r["status"] == 200
                    for r in answered[k + 1 :]
                ), key
        metadata = [report.metadata() for report in reports.values()]
        assert sum(m["responses_429"] for m in metadata) == expected_429
        assert sum(m["retries"] for m in metadata) == expected_429
        assert sum(m["requests"] for m in metadata) == len(answered)
        # Answers with one call left made the readers wait for the reset before going on.
        assert sum(m["seconds_throttled"] for m in metadata) > 0


@pytest.mark.slow
def test_rate_limit_headers_throttle_and_back_off_without_crashing(harness_factory):
    # 7: remaining 1 with a reset 7 s ahead, 429 with a past reset, 429 with no reset, 200.
    with harness_factory() as h:
        h.sb.admin.set_faults("rate_limit_headers")
        contact = h.sb.store.contacts.ids[0]
        with h.intercom() as client:
            started = time.monotonic()
            for _ in range(3):
                assert client.get_contact(contact)["id"] == contact
            elapsed = time.monotonic() - started
        stats = client.stats
        assert stats.rate_limited == 2
        assert stats.retries == 2
        assert 5.5 <= stats.seconds_throttled <= 7.25  # reset 7 s ahead plus up to 0.2 s jitter
        assert elapsed >= 5.5


def test_server_errors_with_html_bodies_are_retried_until_the_read_succeeds(harness_factory):
    # 8: 503 with HTML, 500 with an error list, then 200, on every request.
    with harness_factory() as h:
        h.sb.admin.set_faults("server_errors")
        with h.intercom() as client:
            report = sync.sync_contacts(client, h.con, sync_id="s1", settings=h.settings)
        assert h.count("select count(*) from raw.intercom_contacts") == h.sb.store.live_count()
        assert report.client["status_503"] >= 1 and report.client["status_500"] >= 1
        assert report.client["retries"] == 2 * report.client["status_200"]


def test_records_served_malformed_are_quarantined_with_their_reason_and_counted(
    harness_factory,
):
    # A contact whose updated_at is ISO text, events without a name: set aside, never dropped.
    with harness_factory() as h:
        h.sb.admin.set_faults("malformed_records")
        reports = h.sync_intercom("s1")
        store = h.sb.store
        served = h.sb.admin.mutations()
        bad_contacts = {
            m["contact"]: m["updated_at"] for m in served if m["kind"] == "malformed_contact"
        }
        bad_events = {m["event"]: m["contact"] for m in served if m["kind"] == "malformed_event"}
        # One contact in 50 of the 150, and another's newest event in each 50.
        assert len(bad_contacts) == len(bad_events) == 3
        assert not set(bad_contacts) & set(bad_events.values())

        quarantined = h.con.execute(
            "select stream, record_key, reason, payload from raw.quarantine"
        ).fetchall()
        assert sorted((stream, key, reason) for stream, key, reason, _ in quarantined) == sorted(
            [
                ("intercom_contacts", contact, f"updated_at is not Unix seconds: {stamp!r}")
                for contact, stamp in bad_contacts.items()
            ]
            + [
                ("intercom_events", contact, "event: missing event_name")
                for contact in bad_events.values()
            ]
        )
        # The records are kept as served, so they can be looked at and replayed.
        kept_events = {
            json.loads(payload)["id"]
            for stream, _, _, payload in quarantined
            if stream == "intercom_events"
        }
        assert kept_events == set(bad_events)

        # Everything else landed.
        live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
        landed = {r[0] for r in h.con.execute("select id from raw.intercom_contacts").fetchall()}
        assert landed == {store.contacts.ids[i] for i in live} - set(bad_contacts)
        events = {
            r[0]
            for r in h.con.execute("select intercom_event_id from raw.intercom_events").fetchall()
        }
        assert events == {
            event_id
            for i in live
            if store.contacts.ids[i] not in bad_contacts
            for _, _, _, event_id in store.contact_events(i)
        } - set(bad_events)
        assert reports["contacts"].metadata()["rows_quarantined"] == len(bad_contacts)
        assert reports["events"].metadata()["rows_quarantined"] == len(bad_events)


def test_contacts_set_aside_land_once_they_are_served_whole(harness_factory):
    # A contact quarantined by one sync, unchanged since, is outside the next search window;
    # the incremental id listing finds it, and its events are read with it.
    with harness_factory() as h:
        store = h.sb.store
        h.sb.admin.set_faults("malformed_records")
        h.sync_intercom("s1")
        bad = {m["contact"] for m in h.sb.admin.mutations() if m["kind"] == "malformed_contact"}
        assert len(bad) == 3
        h.sb.admin.set_faults("none")
        reports = h.sync_intercom("s2")
        assert reports["contacts"].notes["mode"] == "incremental"
        live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
        # Those changed within the look-back are found by the search; the others by the listing.
        before_window = [
            i
            for i in live
            if store.contacts.ids[i] in bad
            and store.render_contact(i)["updated_at"] < reports["contacts"].notes["window_low"]
        ]
        landed = {r[0] for r in h.con.execute("select id from raw.intercom_contacts").fetchall()}
        assert landed == {store.contacts.ids[i] for i in live}
        assert before_window
        assert reports["contacts"].notes["contacts_recovered"] == len(before_window)
        stamps = dict(h.con.execute("select id, updated_at from raw.intercom_contacts").fetchall())
        for i in live:
            if store.contacts.ids[i] in bad:
                assert stamps[store.contacts.ids[i]] == store.render_contact(i)["updated_at"]
        events = {
            r[0]
            for r in h.con.execute(
                "select intercom_event_id from raw.intercom_events where contact_id in "
                f"({', '.join(repr(c) for c in sorted(bad))})"
            ).fetchall()
        }
        assert events == {
            event_id
            for i in live
            if store.contacts.ids[i] in bad
            for _, _, _, event_id in store.contact_events(i)
        }
        # A third sync finds nothing left to recover.
        assert h.sync_intercom("s3")["contacts"].notes["contacts_recovered"] == 0


def test_events_set_aside_land_once_they_are_served_whole(harness_factory):
    # A contact's events are re-read only when it changes; one whose event was quarantined
    # is read again by the next sync, until nothing of it is set aside.
    with harness_factory() as h:
        store = h.sb.store
        h.sb.admin.set_faults("malformed_records")
        first = h.sync_intercom("s1")
        bad = {
            m["event"]: m["contact"]
            for m in h.sb.admin.mutations()
            if m["kind"] == "malformed_event"
        }
        assert len(bad) == 3
        assert first["events"].metadata()["rows_quarantined"] == 3
        stored_after_first = h.count("select count(*) from raw.intercom_events")
        h.sb.admin.set_faults("none")
        second = h.sync_intercom("s2")
        events = {
            r[0]
            for r in h.con.execute("select intercom_event_id from raw.intercom_events").fetchall()
        }
        assert set(bad) <= events
        live = [i for i in range(len(store.contacts.ids)) if store.contacts.live[i]]
        assert events == {event_id for i in live for _, _, _, event_id in store.contact_events(i)}
        # The 3 events set aside, and those of the contacts set aside by s1 (found again by
        # the contacts' id listing).
        inserted = second["events"].metadata()["rows_inserted"]
        assert inserted == len(events) - stored_after_first
        # Whole now: the third sync reads none of them again.
        third = h.sync_intercom("s3")
        assert third["events"].metadata()["requests"] == 0


def test_records_still_served_malformed_are_retried_once_then_left_set_aside(harness_factory):
    with harness_factory() as h:
        h.sb.admin.set_faults("malformed_records")
        first = h.sync_intercom("s1")
        second = h.sync_intercom("s2")  # served the same broken records again
        third = h.sync_intercom("s3")
        # The 3 contacts with an event set aside are read again once, then not any more.
        assert first["events"].metadata()["rows_quarantined"] == 3
        assert second["events"].metadata()["rows_quarantined"] == 3
        assert second["events"].notes["contacts_to_read"] >= 3
        assert third["events"].notes["contacts_to_read"] == 0
        assert third["events"].metadata()["requests"] == 0
        # Contacts found again only by the listing, unchanged, are not set aside again.
        assert third["contacts"].notes["contacts_left_set_aside"] > 0
        assert third["contacts"].metadata()["rows_quarantined"] == (
            3 - third["contacts"].notes["contacts_left_set_aside"]
        )
        # Each record once, however many syncs met it.
        assert h.count("select count(*) from raw.quarantine") == 6
        assert h.count("select count(*) from raw.quarantine where times_seen > 1") > 0


def test_a_merged_lead_becomes_a_tombstone_and_its_events_move_to_the_user(harness_factory):
    # 9: lead L merged into user U; L answers 404 and is kept as gone.
    with harness_factory() as h:
        store = h.sb.store
        lead = next(
            store.contacts.ids[i] for i, r in enumerate(store.contacts.roles) if r == "lead"
        )
        user = next(
            store.contacts.ids[i]
            for i, r in enumerate(store.contacts.roles)
            if r == "user" and len(store.contact_events(i)) > 0
        )
        h.sync_intercom("s1")
        lead_events = {
            r[0]
            for r in h.con.execute(
                "select intercom_event_id from raw.intercom_events where contact_id = ?", [lead]
            ).fetchall()
        }
        assert lead_events
        total = h.count("select count(*) from raw.intercom_events")
        h.sb.admin.merge(lead, user)
        # A change in the second a sync starts belongs to the next window: let a second pass.
        h.sb.admin.advance_clock(2)
        reports = h.sync_intercom("s2")
        row = h.con.execute(
            "select is_deleted, deleted_reason, payload->>'role' from raw.intercom_contacts "
            "where id = ?",
            [lead],
        ).fetchall()
        assert row == [(True, "not_found", "lead")]
        assert reports["contacts"].counts.tombstoned == 1
        moved = h.con.execute(
            "select distinct contact_id from raw.intercom_events where intercom_event_id in "
            "(select unnest(?))",
            [sorted(lead_events)],
        ).fetchall()
        assert moved == [(user,)]
        # Moved, not copied: the total stays the same.
        assert h.count("select count(*) from raw.intercom_events") == total
        # A 404 is an answer, not a failure: nothing retried it.
        assert reports["contacts"].client["retries"] == 0


def test_a_shared_email_keeps_both_contacts_and_an_email_only_import_row_is_ambiguous(
    harness_factory, tmp_path
):
    # 10: two contacts share one email; matching never takes the first.
    with harness_factory() as h:
        h.sync_intercom("s1")
        shared = h.con.execute(
            """
            select payload->>'email', count(*) from raw.intercom_contacts
            where coalesce(payload->>'email', '') != '' group by 1 having count(*) > 1
            """
        ).fetchall()
        assert shared, "the sandbox's dirt shares at least one email"
        email = shared[0][0]
        export = tmp_path / "old.csv"
        export.write_text(f"email,event,timestamp\n{email},old_login,2019-01-01T00:00:00Z\n")
        report = import_events(h.con, export)
        assert report.emails_ambiguous == 1
        assert h.con.execute(
            "select contact_id, email from raw.intercom_events where event_name = 'old_login'"
        ).fetchall() == [(None, email)]


def test_a_milliseconds_attribute_lands_as_given_beside_second_timestamps(harness_factory):
    # 11: someone else's custom attribute holds 1712000000000.
    with harness_factory() as h:
        with h.intercom() as client:
            client.create_data_attribute("trial_ends_at", "integer")
            contact = h.sb.store.contacts.ids[0]
            client.update_contact(contact, {"trial_ends_at": 1_712_000_000_000})
            sync.sync_contacts(client, h.con, sync_id="s1", settings=h.settings)
        payload, updated_at = h.con.execute(
            "select payload, updated_at from raw.intercom_contacts where id = ?", [contact]
        ).fetchall()[0]
        assert json.loads(payload)["custom_attributes"]["trial_ends_at"] == 1_712_000_000_000
        assert updated_at < 10**11  # the contact's own stamps are seconds


class Killed(BaseException):
    """Stands for the process being stopped mid-way (not an Exception: nothing may catch it)."""


@pytest.mark.parametrize("fault", ["5xx storm", "killed"])
def test_an_interrupted_events_read_fails_loudly_and_the_next_sync_completes_it(
    harness_factory, fault
):
    # Interrupted mid-way, then a clean sync: the same tables as one uninterrupted run.
    with harness_factory(event_window_days=0) as clean:
        clean.sync_intercom("c1")
        expected = _final_tables(clean.con)
    with harness_factory(db="broken.duckdb", event_window_days=0) as h:
        with h.intercom() as client:
            sync.sync_contacts(client, h.con, sync_id="b1", settings=h.settings)
        settings = h.settings.model_copy(update={"progress_every": 40})

        def interrupt(message: str) -> None:
            if "contacts read" not in message:
                return
            if fault == "killed":
                raise Killed
            h.sb.admin.set_faults(None, error_share=1.0)

        expected_error = Killed if fault == "killed" else IngestError
        with pytest.raises(expected_error) as caught:
            sync.sync_events(
                h.async_intercom(max_attempts=2),
                h.con,
                sync_id="b1",
                settings=settings,
                flush_every=20,
                progress=interrupt,
            )
        if fault != "killed":
            assert isinstance(caught.value.__cause__, IntercomError)
            assert "stopped after" in str(caught.value)
        partial = h.count("select count(*) from raw.intercom_event_coverage")
        assert 0 < partial < h.sb.store.live_count()
        h.sb.admin.set_faults(None)
        again = sync.sync_events(h.async_intercom(), h.con, sync_id="b2", settings=h.settings)
        assert again.notes["contacts_read"] == h.sb.store.live_count() - partial
        assert _final_tables(h.con) == expected


def _final_tables(con) -> dict[str, list[tuple]]:
    """The raw tables an uninterrupted sync must equal: whole payloads, not only ids."""
    tables = {
        "contacts": ("intercom_contacts", CONTACT_COLUMNS),
        "events": ("intercom_events", EVENT_COLUMNS),
        "coverage": ("intercom_event_coverage", "contact_id, complete_from"),
    }
    return {
        name: sorted(con.execute(f"select {columns} from raw.{table}").fetchall())
        for name, (table, columns) in tables.items()
    }


@pytest.mark.slow
def test_a_sync_killed_in_its_process_mid_events_is_completed_by_the_next_one(
    harness_factory, tmp_path
):
    # A real process, SIGKILLed while reading events: no handler runs, no finally, no flush.
    with harness_factory(event_window_days=0) as h:
        h.sync_intercom("clean")
        expected = _final_tables(h.con)
        live = h.sb.store.live_count()

        killed = tmp_path / "killed.duckdb"
        # Answers a little slow and four at a time: the kill lands mid-read on any machine.
        h.sb.admin.set_faults(None, delay_seconds=0.05)
        env = os.environ | h.sb.env()
        env |= {"NEXTBEST_WAREHOUSE": str(killed), "NEXTBEST_INGEST_EVENT_CONCURRENCY": "4"}
        before = len(h.sb.state.request_log)
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "10"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while child.poll() is None and time.monotonic() < deadline:
                asked = [r for r in list(h.sb.state.request_log)[before:] if r["path"] == "/events"]
                if len(asked) >= live // 2:
                    break
                time.sleep(0.02)
            assert child.poll() is None, child.stderr.read().decode()
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        h.sb.admin.set_faults(None)

        con = connect(killed)
        try:
            partial = con.execute("select count(*) from raw.intercom_event_coverage").fetchone()[0]
            assert 0 < partial < live
            with h.intercom() as client:
                sync.sync_contacts(client, con, sync_id="next", settings=h.settings)
            again = sync.sync_events(h.async_intercom(), con, sync_id="next", settings=h.settings)
            assert again.notes["contacts_read"] == live - partial
            assert _final_tables(con) == expected
        finally:
            con.close()
