"""Pure decisions of the clients and loaders: windows, back-off, keys, upserts. No server."""

from __future__ import annotations

import hashlib
import json

import duckdb
import httpx
import pytest

from orchestration.clients.intercom import (
    IntercomBadRequest,
    IntercomClient,
    IntercomNotFound,
    IntercomServerError,
    next_page_url,
    next_starting_after,
)
from orchestration.clients.retrying import RateBudget, wait_for_reset
from orchestration.clients.stripe import retry_after_seconds, should_retry
from orchestration.ingest.intercom import (
    ContactToRead,
    StreamReport,
    complete_from,
    contact_window,
    sync_contacts,
    window_query,
)
from orchestration.ingest.load import (
    ObjectRow,
    as_unix_seconds,
    event_key,
    upsert_objects,
    with_ordinals,
)
from orchestration.warehouse import ensure_raw_tables

DAY = 86_400


def _matches(query: dict, updated_at: int) -> bool:
    # Intercom's semantics of the two date operators, written out independently of the code.
    ops = {">": lambda a, b: a > b, "<": lambda a, b: a < b}
    return all(ops[f["operator"]](updated_at, f["value"]) for f in query["value"])


def test_consecutive_windows_meet_without_gap_or_overlap_at_one_second():
    first = contact_window(1_699_999_999, 1_702_592_000, lookback=0)
    second = contact_window(1_702_591_999, 1_705_000_000, lookback=0)
    assert first == (1_700_000_000, 1_702_591_999)
    assert second == (1_702_592_000, 1_704_999_999)
    q1, q2 = window_query(*first), window_query(*second)
    # Date fields take only > and <: the inclusive bounds shift by one second.
    assert q1["value"][0] == {"field": "updated_at", "operator": ">", "value": 1_699_999_999}
    assert q1["value"][1] == {"field": "updated_at", "operator": "<", "value": 1_702_592_000}
    for t in range(1_702_591_990, 1_702_592_010):
        assert _matches(q1, t) + _matches(q2, t) == 1, t
    assert _matches(q1, 1_702_591_999) and not _matches(q2, 1_702_591_999)


def test_a_first_sync_has_no_window_and_the_look_back_reaches_behind_the_cursor():
    assert contact_window(None, 1_700_000_000, lookback=DAY) is None
    assert contact_window(1_700_000_000, 1_700_100_000, lookback=DAY) == (
        1_700_000_001 - DAY,
        1_700_099_999,
    )


def test_throttles_until_the_reset_when_the_budget_is_nearly_spent():
    budget = RateBudget(reserve=2, jitter=0.2)
    now = 1_000_000.0
    assert budget.acquire(now) == 0  # nothing known yet
    budget.release(
        {
            "X-RateLimit-Limit": "1666",
            "X-RateLimit-Remaining": "1",
            "X-RateLimit-Reset": str(int(now) + 7),
        },
        now,
    )
    wait = budget.acquire(now)
    assert 7.0 <= wait <= 7.2
    budget.release(None, now)
    # Once the window is over, the budget is whole again.
    assert budget.acquire(now + 8) == 0


def test_plenty_of_budget_or_a_reset_in_the_past_means_no_throttle():
    budget = RateBudget(reserve=2)
    now = 1_000_000.0
    budget.release({"X-RateLimit-Remaining": "500", "X-RateLimit-Reset": str(int(now) + 5)}, now)
    assert budget.acquire(now) == 0
    budget.release({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) - 5)}, now)
    assert budget.acquire(now) == 0


def test_rate_limit_wait_is_the_time_to_reset_plus_jitter_capped():
    assert wait_for_reset(None, 100.0, cap=60) is None
    assert wait_for_reset(95, 100.0, cap=60, rng=lambda: 1.0) == 0.5  # past reset: jitter only
    assert wait_for_reset(107, 100.0, cap=60, rng=lambda: 0.0) == 7.0
    assert wait_for_reset(10_000, 100.0, cap=60, rng=lambda: 0.5) == 60


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Stripe-Should-Retry": "true"}, True),  # lock_timeout
        (429, {"Retry-After": "2"}, True),  # rate_limit
        (500, {}, True),
        (409, {}, True),
        (400, {}, False),
        (404, {}, False),
        (500, {"Stripe-Should-Retry": "false"}, False),
        (400, {"stripe-should-retry": "true"}, True),
    ],
)
def test_stripe_retry_decisions_come_from_status_and_headers(status, headers, expected):
    assert should_retry(status, headers) is expected


def test_retry_after_is_honoured_and_capped():
    assert retry_after_seconds({"Retry-After": "2"}, cap=60) == 2
    assert retry_after_seconds({"retry-after": "120"}, cap=30) == 30
    assert retry_after_seconds({}, cap=30) is None
    assert retry_after_seconds({"Retry-After": "soon"}, cap=30) is None


def test_pagination_cursors_stop_when_next_is_absent():
    page = {"pages": {"next": {"page": 2, "starting_after": "abc"}}}
    assert next_starting_after(page) == "abc"
    assert next_starting_after({"pages": {"page": 3}}) is None
    assert next_page_url({"pages": {"next": "https://x/events?page=2"}}) == (
        "https://x/events?page=2"
    )
    assert next_page_url({"pages": {}}) is None


def test_milliseconds_are_detected_not_turned_into_year_56000():
    assert as_unix_seconds(1_712_000_000_000) == (1_712_000_000, True)
    assert as_unix_seconds(1_712_000_000) == (1_712_000_000, False)
    assert as_unix_seconds("1712000000") == (1_712_000_000, False)
    assert as_unix_seconds("yesterday") == (None, False)
    assert as_unix_seconds(True) == (None, False)


def test_event_ids_follow_the_documented_md5_and_number_same_second_copies():
    assert event_key("c1", "main", 1_700_000_000) == hashlib.md5(b"c1|main|1700000000").hexdigest()
    assert (
        event_key("c1", "main", 1_700_000_000, 1)
        == hashlib.md5(b"c1|main|1700000000|1").hexdigest()
    )
    keys = [("c1", "a", 1), ("c1", "b", 1), ("c1", "a", 1), ("c2", "a", 1), ("c1", "a", 1)]
    assert with_ordinals(keys) == [0, 0, 1, 0, 2]


def _contact(**kw) -> ContactToRead:
    base = dict(
        contact_id="c",
        external_id=None,
        email=None,
        created_at=None,
        updated_at=None,
        complete_from=None,
        last_read_at=None,
    )
    return ContactToRead(**(base | kw))


def test_history_is_complete_from_sign_up_only_inside_the_event_window():
    read_at = 200 * DAY
    horizon = read_at - 90 * DAY
    young = _contact(created_at=150 * DAY)
    old = _contact(created_at=10 * DAY)
    assert complete_from(young, read_at, 160 * DAY, 90) == 150 * DAY
    assert complete_from(old, read_at, 120 * DAY, 90) == horizon
    # An API that served events older than its window (window off) gave the whole history.
    assert complete_from(old, read_at, 20 * DAY, 90) == 10 * DAY
    # Re-read within the window: the earlier start holds; after a longer gap it restarts.
    kept = _contact(created_at=10 * DAY, complete_from=10 * DAY, last_read_at=read_at - DAY)
    assert complete_from(kept, read_at, None, 90) == 10 * DAY
    stale = _contact(created_at=10 * DAY, complete_from=10 * DAY, last_read_at=100 * DAY)
    assert complete_from(stale, read_at, None, 90) == horizon


def test_upserts_count_new_changed_unchanged_and_keep_the_latest_duplicate():
    con = duckdb.connect()
    ensure_raw_tables(con)
    page1 = [ObjectRow(f"u{k}", 100 + k, {"id": f"u{k}", "v": k}) for k in (1, 2, 3)]
    page2 = [ObjectRow("u3", 110, {"id": "u3", "v": 33}), ObjectRow("u4", 104, {"id": "u4"})]
    first = upsert_objects(con, "intercom_contacts", page1 + page2, "s1")
    assert (first.read, first.inserted, first.duplicates) == (5, 4, 1)
    stored = dict(con.execute("select id, payload from raw.intercom_contacts").fetchall())
    assert sorted(stored) == ["u1", "u2", "u3", "u4"]
    assert json.loads(stored["u3"])["v"] == 33
    again = upsert_objects(con, "intercom_contacts", page1[:2] + page2, "s2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert (
        con.execute("select count(*) from raw.intercom_contacts where sync_id = 's2'").fetchone()[0]
        == 0
    )
    changed = upsert_objects(
        con, "intercom_contacts", [ObjectRow("u1", 120, {"id": "u1", "v": 9})], "s3"
    )
    assert (changed.inserted, changed.updated) == (0, 1)


def test_the_log_line_of_a_load_adds_up_to_what_was_read():
    con = duckdb.connect()
    ensure_raw_tables(con)
    upsert_objects(con, "stripe_customers", [ObjectRow("cus_1", 100, {"id": "cus_1"})], "s1")
    # cus_1 again as stored, cus_2 new, and cus_2 a second time (from the event feed).
    rows = [
        ObjectRow("cus_1", 100, {"id": "cus_1"}),
        ObjectRow("cus_2", 101, {"id": "cus_2"}),
        ObjectRow("cus_2", 102, {"id": "cus_2"}),
    ]
    report = StreamReport(
        "stripe_customers", counts=upsert_objects(con, "stripe_customers", rows, "s2")
    )
    line = report.summary()
    assert line.startswith(
        "stripe_customers: read 3, inserted 1, updated 0, unchanged 1, repeated 1, quarantined 0,"
    )


def _client(handler) -> IntercomClient:
    return IntercomClient(
        "https://api.example.test",
        "t",
        transport=httpx.MockTransport(handler),
        initial_backoff=0.001,
        max_backoff=0.01,
        max_attempts=3,
    )


def test_a_5xx_html_body_is_retried_and_never_parsed_as_json():
    answers = iter(
        [
            httpx.Response(503, text="<html><h1>503 Service Temporarily Unavailable</h1></html>"),
            httpx.Response(
                500,
                json={
                    "type": "error.list",
                    "errors": [{"code": "server_error", "message": "boom"}],
                },
            ),
            httpx.Response(200, json={"type": "contact", "id": "c1"}),
        ]
    )
    client = _client(lambda request: next(answers))
    assert client.get_contact("c1") == {"type": "contact", "id": "c1"}
    stats = client.stats.snapshot()
    assert (stats["requests"], stats["retries"], stats["status_503"], stats["status_500"]) == (
        3,
        2,
        1,
        1,
    )


def test_a_storm_of_5xx_fails_after_the_attempt_budget_with_the_status():
    client = _client(lambda request: httpx.Response(502, text="bad gateway"))
    with pytest.raises(IntercomServerError) as caught:
        client.get_contact("c1")
    assert caught.value.status == 502
    assert "bad gateway" in str(caught.value)
    assert client.stats.requests == 3


def test_a_4xx_that_cannot_succeed_fails_at_once_with_code_and_request_id():
    body = {
        "type": "error.list",
        "request_id": "req-9",
        "errors": [{"code": "not_found", "message": "User Not Found"}],
    }
    client = _client(lambda request: httpx.Response(404, json=body))
    with pytest.raises(IntercomNotFound) as caught:
        client.get_contact("gone")
    assert (caught.value.code, caught.value.request_id) == ("not_found", "req-9")
    assert client.stats.requests == 1
    bad = {"type": "error.list", "errors": [{"code": "parameter_invalid", "message": "no"}]}
    client = _client(lambda request: httpx.Response(400, json=bad))
    with pytest.raises(IntercomBadRequest):
        client.create_data_attribute("x", "string")
    assert client.stats.requests == 1


def test_search_sends_the_cursor_in_the_body_until_no_next_page():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "starting_after" not in body["pagination"]:
            return httpx.Response(
                200,
                json={
                    "data": [{"id": "a"}, {"id": "b"}],
                    "pages": {"next": {"starting_after": "cur"}},
                },
            )
        return httpx.Response(200, json={"data": [{"id": "c"}], "pages": {}})

    client = _client(handler)
    found = [
        c["id"]
        for c in client.search_contacts(
            {"field": "role", "operator": "=", "value": "user"}, per_page=2
        )
    ]
    assert found == ["a", "b", "c"]
    assert bodies[1]["pagination"] == {"per_page": 2, "starting_after": "cur"}


def test_records_that_cannot_be_parsed_are_quarantined_with_the_reason_not_dropped():
    contacts = [
        {"type": "contact", "id": "ok1", "updated_at": 1_700_000_000},
        {"type": "contact", "updated_at": 1_700_000_000},
        {"type": "contact", "id": "bad2", "updated_at": "yesterday"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"type": "list", "data": contacts, "pages": {}})

    con = duckdb.connect()
    ensure_raw_tables(con)
    with _client(handler) as client:
        report = sync_contacts(client, con, sync_id="s1", sync_start=1_700_000_100)
    assert report.counts.quarantined == 2
    assert report.metadata()["rows_quarantined"] == 2
    assert con.execute("select id from raw.intercom_contacts").fetchall() == [("ok1",)]
    rows = con.execute("select record_key, reason from raw.quarantine order by reason").fetchall()
    assert rows == [
        (None, "missing or non-string id"),
        ("bad2", "updated_at is not Unix seconds: 'yesterday'"),
    ]


def test_a_429_without_reset_does_not_leave_the_next_window_looking_spent():
    budget = RateBudget(reserve=2)
    now = 1_000_000.0
    budget.acquire(now)
    budget.release({"X-RateLimit-Remaining": "0"}, now)  # 429 with no reset header
    budget.acquire(now)
    budget.release({"X-RateLimit-Remaining": "1665", "X-RateLimit-Reset": str(int(now) + 9)}, now)
    assert budget.acquire(now) == 0
