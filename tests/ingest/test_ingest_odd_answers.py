"""Odd answers real APIs give: looping cursors, malformed pages, odd field types. No server."""

from __future__ import annotations

import asyncio
import json

import duckdb
import httpx
import pytest

from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient, IntercomError
from orchestration.warehouse import ensure_raw_tables

FAST = {"initial_backoff": 0.001, "max_backoff": 0.01, "max_attempts": 2}


def _client(handler) -> IntercomClient:
    return IntercomClient(
        "https://api.example.test", "t", transport=httpx.MockTransport(handler), **FAST
    )


# A listing that never stops would hang the test instead of failing it: past this many pages
# the stand-ins below answer a last page, so a listing that does not refuse the repeated
# cursor ends without the error the test expects.
MAX_PAGES = 10


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    ensure_raw_tables(con)
    return con


def test_a_contacts_cursor_that_comes_back_fails_instead_of_looping():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params.get("starting_after"))
        # Page 1 points to "b", page "b" points to "c", page "c" points back to "b".
        after = {None: "b", "b": "c", "c": "b"}[calls[-1]]
        contact = {"id": f"c{len(calls)}", "updated_at": 1}
        pages = {"next": {"starting_after": after}} if len(calls) < MAX_PAGES else {}
        return httpx.Response(200, json={"data": [contact], "pages": pages})

    with pytest.raises(IntercomError) as caught:
        list(_client(handler).list_contacts())
    assert calls == [None, "b", "c"]
    # Pages read: the first, "b" and "c", whose next is "b" again.
    assert str(caught.value) == (
        "Intercom GET /contacts failed with 200: pages.next repeats 'b', a cursor already "
        "followed: the listing loops after 3 pages"
    )


def test_a_search_cursor_that_comes_back_fails_instead_of_looping():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["pagination"].get("starting_after"))
        pages = {"next": {"starting_after": "x"}} if len(calls) < MAX_PAGES else {}
        return httpx.Response(200, json={"data": [], "pages": pages})

    query = {"field": "role", "operator": "=", "value": "user"}
    with pytest.raises(IntercomError, match=r"'x'.*loops"):
        list(_client(handler).search_contacts(query))
    assert calls == [None, "x"]


def test_an_events_next_url_that_comes_back_fails_instead_of_looping():
    calls = []
    again = "https://api.example.test/events?next=1"

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        pages = {"next": again} if len(calls) < MAX_PAGES else {}
        page = {"type": "event.list", "events": [], "pages": pages}
        return httpx.Response(200, json=page)

    client = AsyncIntercomClient(
        "https://api.example.test", "t", transport=httpx.MockTransport(handler), **FAST
    )

    async def read() -> list:
        async with client:
            return [e async for e in client.list_events(intercom_user_id="u1")]

    with pytest.raises(IntercomError, match="loops"):
        asyncio.run(read())
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(IntercomError, match="loops"):
        list(_client(handler).list_events(intercom_user_id="u1"))
    assert len(calls) == 2


def test_a_contact_companies_next_url_that_comes_back_fails_instead_of_looping():
    again = "https://api.example.test/contacts/c1/companies?page=2"
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        pages = {"next": again} if len(calls) < MAX_PAGES else {}
        return httpx.Response(200, json={"type": "list", "data": [], "pages": pages})

    with pytest.raises(IntercomError, match="loops"):
        _client(handler).list_contact_companies("c1")
    # The first page and the one `again` names; asked for again, it is refused.
    assert calls == ["https://api.example.test/contacts/c1/companies?per_page=150", again]


def _two_pages(first: dict):
    """A contacts listing whose first page is `first` and whose second holds contact c2."""

    def handler(request: httpx.Request) -> httpx.Response:
        if "starting_after" not in request.url.params:
            return httpx.Response(200, json=first)
        return httpx.Response(200, json={"data": [{"id": "c2", "updated_at": 1}], "pages": {}})

    return handler


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"data": None, "pages": {"next": {"starting_after": "a"}}}, "data is a NoneType"),
        ({"pages": {"next": {"starting_after": "a"}}}, "data is missing"),
        ({"data": {"id": "c1"}, "pages": {}}, "data is a dict"),
        ({"data": "c1", "pages": {}}, "data is a str"),
        # The cursor vanished from a page that says there is a next one.
        ({"data": [{"id": "c1"}], "pages": {"next": {"page": 2}}}, "no starting_after"),
        ({"data": [{"id": "c1"}], "pages": {"next": {"starting_after": 7}}}, "no starting_after"),
        ({"data": [{"id": "c1"}], "pages": ["next"]}, "pages is a list"),
    ],
)
def test_a_contacts_page_of_the_wrong_shape_fails_with_the_reason(first, reason):
    with pytest.raises(IntercomError) as caught:
        list(_client(_two_pages(first)).list_contacts())
    assert reason in str(caught.value)


def test_an_empty_200_where_a_page_belongs_fails_instead_of_ending_the_listing():
    handler = _two_pages({"data": [{"id": "c1"}], "pages": {"next": {"starting_after": "a"}}})

    def empty_second(request: httpx.Request) -> httpx.Response:
        if "starting_after" in request.url.params:
            return httpx.Response(200, content=b"")
        return handler(request)

    with pytest.raises(IntercomError, match="empty answer"):
        list(_client(empty_second).list_contacts())


def test_the_last_page_may_say_next_is_null():
    page = {"data": [{"id": "c1"}], "pages": {"next": None}}
    assert [c["id"] for c in _client(lambda r: httpx.Response(200, json=page)).list_contacts()] == [
        "c1"
    ]


def test_an_events_page_without_an_events_list_fails():
    page = {"type": "event.list", "events": None, "pages": {}}
    with pytest.raises(IntercomError, match="events is a NoneType"):
        list(_client(lambda r: httpx.Response(200, json=page)).list_events(intercom_user_id="u"))


def test_a_scroll_page_without_data_fails_and_tombstones_no_company():
    from orchestration.ingest.intercom import sync_companies

    con = _warehouse()
    two = [{"id": "co1", "updated_at": 1}, {"id": "co2", "updated_at": 1}]
    pages = iter([two, []])

    def whole(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"type": "list", "data": next(pages), "scroll_param": "p"})

    assert sync_companies(_client(whole), con, sync_id="s1").counts.inserted == 2
    # The next scroll serves co1, then a page without `data`, then the empty end page.
    answers = iter(
        [
            {"type": "list", "data": [two[0]], "scroll_param": "p"},
            {"type": "list", "scroll_param": "p"},
            {"type": "list", "data": [], "scroll_param": "p"},
        ]
    )

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(answers))

    with pytest.raises(IntercomError, match="data is missing"):
        sync_companies(_client(broken), con, sync_id="s2")
    rows = con.execute("select id, is_deleted from raw.intercom_companies order by id").fetchall()
    assert rows == [("co1", False), ("co2", False)]


@pytest.mark.parametrize(
    ("text", "read_as"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e400", "inf")],
)
def test_a_time_that_is_not_a_finite_number_is_set_aside_not_a_crash(text, read_as):
    from orchestration.ingest.intercom import sync_contacts

    # Python's JSON parser takes NaN and Infinity, and 1e400 overflows to infinity.
    body = '{"data": [{"id": "ok", "updated_at": 5}, {"id": "odd", "updated_at": TIME}]}'
    body = body.replace("TIME", text)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode())

    con = _warehouse()
    report = sync_contacts(_client(handler), con, sync_id="s1", sync_start=100)
    assert report.counts.quarantined == 1
    assert con.execute("select id from raw.intercom_contacts").fetchall() == [("ok",)]
    key, reason = con.execute("select record_key, reason from raw.quarantine").fetchone()
    assert key == "odd"
    # The reason shows the float the JSON parser made of the text.
    assert reason == f"updated_at is not Unix seconds: {read_as}"


def test_an_incremental_listing_holding_a_null_record_sets_it_aside():
    from orchestration.ingest.intercom import sync_contacts

    con = _warehouse()
    first = {"data": [{"id": "c1", "updated_at": 50}], "pages": {}}
    sync_contacts(
        _client(lambda r: httpx.Response(200, json=first)), con, sync_id="s1", sync_start=100
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"data": [], "pages": {}})
        return httpx.Response(200, json={"data": [{"id": "c1", "updated_at": 50}, None]})

    report = sync_contacts(_client(handler), con, sync_id="s2", sync_start=200)
    assert report.counts.quarantined == 1
    assert con.execute("select reason, payload from raw.quarantine").fetchall() == [
        ("not a JSON object: NoneType", "None")
    ]
    assert con.execute("select id, is_deleted from raw.intercom_contacts").fetchall() == [
        ("c1", False)
    ]


def test_an_event_with_a_field_of_the_wrong_type_is_set_aside_and_the_batch_lands():
    from orchestration.ingest.intercom import (
        ContactToRead,
        StreamReport,
        _ContactEvents,
        _flush_events,
    )
    from orchestration.ingest.settings import IngestSettings

    con = _warehouse()
    t = 1_700_000_000
    first = ContactToRead("c-1", "u-1", "a@x.test", t - 1000, t - 100, None, None)
    second = ContactToRead("c-2", "u-2", "b@x.test", t - 1000, t - 100, None, None)
    events = [
        {"id": "e1", "event_name": "main", "created_at": t - 50},
        {"id": "e2", "event_name": "main", "created_at": t - 40, "user_id": {"v": 1}},
        {"id": "e3", "event_name": "main", "created_at": t - 30, "email": ["a@x.test"]},
        {"id": ["e4"], "event_name": "main", "created_at": t - 20},
        {"id": "e5", "event_name": "main", "created_at": t - 10, "intercom_user_id": 1.5},
        {"id": "e6", "event_name": "main", "created_at": t - 5, "user_id": True},
        # A whole number is the text of its digits, as an export's CSV gives it.
        {"id": "e7", "event_name": "cart", "created_at": t - 5, "user_id": 42},
    ]
    other = [{"id": "e8", "event_name": "main", "created_at": t - 60}]
    report = StreamReport("intercom_events")
    results = [_ContactEvents(first, events), _ContactEvents(second, other)]
    _flush_events(con, results, report, "s1", t, IngestSettings())
    stored = con.execute(
        "select intercom_event_id, contact_id, external_id, email from raw.intercom_events "
        "order by 1"
    ).fetchall()
    assert stored == [
        ("e1", "c-1", "u-1", "a@x.test"),
        ("e7", "c-1", "42", "a@x.test"),
        ("e8", "c-2", "u-2", "b@x.test"),
    ]
    assert (report.counts.inserted, report.counts.quarantined) == (3, 5)
    reasons = con.execute(
        "select record_key, reason from raw.quarantine order by reason"
    ).fetchall()
    assert reasons == [
        ("c-1", "event: email is a list, not a string"),
        ("c-1", "event: id is a list, not a string"),
        ("c-1", "event: intercom_user_id is a float, not a string"),
        ("c-1", "event: user_id is a bool, not a string"),
        ("c-1", "event: user_id is a dict, not a string"),
    ]


def test_a_company_entry_without_an_id_or_not_an_object_is_set_aside_naming_its_contact():
    from orchestration.ingest.intercom import sync_contact_companies

    con = _warehouse()
    embedded = {
        "c-1": [{"id": "co1"}, {"name": "no id"}, "co2", None],
        "c-2": [{"id": "co3"}],
        "c-3": [{"id": 7}],
    }
    for contact_id, data in embedded.items():
        payload = {"id": contact_id, "companies": {"data": data, "has_more": False}}
        con.execute(
            "insert into raw.intercom_contacts values (?, 1, ?, false, null, 's0', now())",
            [contact_id, json.dumps(payload)],
        )
    # Links an earlier sync stored: c-2's co8 is gone from its list, so it goes; c-1's co9
    # may be one of the entries that cannot be read, so it stays.
    con.execute(
        "insert into raw.intercom_contact_companies values "
        "('c-1', 'co9', '{}', 's0', now()), ('c-2', 'co8', '{}', 's0', now())"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected: {request.url}")

    report = sync_contact_companies(_client(handler), con, sync_id="s1")
    links = con.execute(
        "select contact_id, company_id from raw.intercom_contact_companies order by all"
    ).fetchall()
    assert links == [("c-1", "co1"), ("c-1", "co9"), ("c-2", "co3")]
    set_aside = con.execute(
        "select stream, record_key, reason, payload from raw.quarantine order by all"
    ).fetchall()
    assert set_aside == [
        (
            "intercom_contact_companies",
            "c-1",
            "company of contact c-1: missing id",
            '{"name":"no id"}',
        ),
        (
            "intercom_contact_companies",
            "c-1",
            "company of contact c-1: not a JSON object: NoneType",
            "None",
        ),
        (
            "intercom_contact_companies",
            "c-1",
            "company of contact c-1: not a JSON object: str",
            "'co2'",
        ),
        (
            "intercom_contact_companies",
            "c-3",
            "company of contact c-3: id is a int, not a string",
            '{"id":7}',
        ),
    ]
    counts = report.counts
    assert (counts.read, counts.inserted, counts.quarantined) == (6, 2, 4)
    assert report.metadata()["rows_quarantined"] == 4
    assert report.notes["links_removed"] == 1
