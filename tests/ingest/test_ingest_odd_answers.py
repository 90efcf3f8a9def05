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
        return httpx.Response(
            200, json={"data": [contact], "pages": {"next": {"starting_after": after}}}
        )

    with pytest.raises(IntercomError) as caught:
        list(_client(handler).list_contacts())
    assert calls == [None, "b", "c"]
    assert "'b'" in str(caught.value) and "loops" in str(caught.value)
    assert "GET /contacts" in str(caught.value)


def test_a_search_cursor_that_comes_back_fails_instead_of_looping():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["pagination"].get("starting_after"))
        return httpx.Response(200, json={"data": [], "pages": {"next": {"starting_after": "x"}}})

    query = {"field": "role", "operator": "=", "value": "user"}
    with pytest.raises(IntercomError, match=r"'x'.*loops"):
        list(_client(handler).search_contacts(query))
    assert calls == [None, "x"]


def test_an_events_next_url_that_comes_back_fails_instead_of_looping():
    calls = []
    again = "https://api.example.test/events?next=1"

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        page = {"type": "event.list", "events": [], "pages": {"next": again}}
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

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"type": "list", "data": [], "pages": {"next": again}})

    with pytest.raises(IntercomError, match="loops"):
        _client(handler).list_contact_companies("c1")
