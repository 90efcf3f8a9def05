"""The events read's throughput: requests overlap, answers come back whole, the budget is filled."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from orchestration.clients.intercom import (
    AsyncIntercomClient,
    IntercomNotFound,
    ThreadPoolTransport,
)
from orchestration.ingest import intercom as sync


def test_the_thread_pool_sends_as_many_requests_at_once_as_it_has_threads(harness_factory):
    # The `slow` profile holds every answer 0.25 s: 16 requests through 8 threads take two
    # rounds (0.5 s); one at a time they would take 16 x 0.25 = 4 s.
    with harness_factory(faults="slow") as h:
        ids = h.sb.store.contacts.ids[:16]

        async def read() -> float:
            async with h.async_intercom(max_connections=8) as client:
                started = time.perf_counter()
                found = await asyncio.gather(*(client.get_contact(i) for i in ids))
                elapsed = time.perf_counter() - started
            assert [c["id"] for c in found] == list(ids)
            return elapsed

        elapsed = asyncio.run(read())
    assert 0.5 <= elapsed < 2.0


def test_answers_through_the_thread_pool_keep_status_headers_and_body(harness_factory):
    with harness_factory() as h:
        store = h.sb.store
        contact = store.contacts.ids[3]

        async def read() -> tuple[dict, IntercomNotFound, int | None]:
            client = h.async_intercom()
            assert isinstance(client._http._transport, ThreadPoolTransport)
            async with client:
                found = await client.get_contact(contact)
                with pytest.raises(IntercomNotFound) as missing:
                    await client.get_contact("0" * 24)
                return found, missing.value, client.budget.limit

        found, missing, limit = asyncio.run(read())
    assert found["id"] == contact
    assert found["external_id"] == store.contacts.external_ids[3]
    assert (missing.status, missing.code) == (404, "not_found")
    assert missing.request_id
    # The sandbox's default 10,000 a minute, counted in 10-second windows.
    assert limit == math.ceil(10_000 / 6)


@pytest.mark.slow
def test_a_rate_limited_read_fills_each_window_without_a_429(harness_factory):
    # 120 a minute is 20 a 10-second window, of which the client keeps 2 in hand (it waits
    # for the reset when 2 or fewer are left), so it may send 18. Started on a window's first
    # second, a read of N requests needs ceil(N / 18) windows when each is filled that far; a
    # throttle that left more budget unused, or waited a window too many, would need more.
    with harness_factory(rate_limit_per_minute=120) as h:
        store = h.sb.store
        with h.intercom() as client:
            sync.sync_contacts(client, h.con, sync_id="s1", settings=h.settings)
        h.con.execute(
            "delete from raw.intercom_contacts where id not in "
            "(select id from raw.intercom_contacts where not is_deleted order by id limit 45)"
        )
        positions = [
            store.id_index[r[0]]
            for r in h.con.execute("select id from raw.intercom_contacts").fetchall()
        ]
        # One page per contact, one more for each further 100 events.
        pages = sum(max(1, math.ceil(len(store.contact_events(i)) / 100)) for i in positions)
        time.sleep(10 - time.time() % 10)
        first_window = int(time.time() // 10)
        client = AsyncIntercomClient(h.sb.intercom_url, h.sb.intercom_token, max_connections=8)
        client.clock.pin(h.offset())
        report = sync.sync_events(client, h.con, sync_id="s1", settings=h.settings)
        windows = int(time.time() // 10) - first_window + 1
    assert report.client["requests"] == pages
    assert report.client["rate_limited"] == 0
    assert windows == math.ceil(pages / 18)
