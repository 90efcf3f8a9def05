"""Reading Intercom events per contact: rate-limit use, 429s, and speed against a sequential reader.

The sandbox runs in its own process (`nextbest sandbox serve`), as a real service would, so
the reader and the server do not share one interpreter. The sandbox holds
NEXTBEST_BENCH_INGEST_USERS synthetic users (default 20,000); the rate-limited read stores the
events of NEXTBEST_BENCH_INGEST_SLICE of them (default 3,000: several rate-limit windows at
the default limit), and the unlimited comparison reads a third of that slice both ways.
"""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Figure, benchmark
from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient
from orchestration.ingest.intercom import sync_contacts, sync_events
from orchestration.ingest.settings import IngestSettings
from orchestration.warehouse import connect, ensure_raw_tables

RATE_LIMIT_PER_MINUTE = 10_000  # the sandbox's default, Intercom's documented app limit
WINDOW_SECONDS = 10


@contextmanager
def _sandbox(users: int, rate_limit: int, faults: str = "none") -> Iterator[dict[str, str]]:
    env = os.environ | {
        "NEXTBEST_SANDBOX_RATE_LIMIT": str(rate_limit),
        "NEXTBEST_SANDBOX_USERS": str(users),
        "NEXTBEST_SANDBOX_SEED": "0",
        "NEXTBEST_SANDBOX_FAULTS": faults,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration.cli",
            "sandbox",
            "serve",
            "--dataset",
            "synthetic",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    found: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.match(r"export (\w+)=(\S+)", line.strip())
            if match:
                found[match.group(1)] = match.group(2)
            if "admin:" in line:
                break
        if "INTERCOM_BASE_URL" not in found:
            raise RuntimeError(f"the sandbox did not start: {found}")
        yield found
    finally:
        process.terminate()
        process.wait(timeout=30)


def _contacts(env: dict[str, str], folder: Path, keep: int) -> tuple[object, list[str]]:
    con = connect(folder / "warehouse.duckdb")
    ensure_raw_tables(con)
    with IntercomClient(env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"]) as client:
        sync_contacts(client, con, sync_id="bench")
    # Only the slice's events are read: drop the other contacts from this scratch warehouse.
    con.execute(
        "delete from raw.intercom_contacts where id not in "
        "(select id from raw.intercom_contacts order by id limit ?)",
        [keep],
    )
    ids = [r[0] for r in con.execute("select id from raw.intercom_contacts order by id").fetchall()]
    return con, ids


def _rate_limited_read(users: int, size: int) -> list[Figure]:
    allowed = RATE_LIMIT_PER_MINUTE / 60
    with _sandbox(users, RATE_LIMIT_PER_MINUTE) as env, tempfile.TemporaryDirectory() as tmp:
        con, ids = _contacts(env, Path(tmp), size)
        # Start on a fresh rate-limit window, so the first one is not half spent already.
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS)
        client = AsyncIntercomClient(env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"])
        settings = IngestSettings().model_copy(update={"progress_every": 5_000})
        report = sync_events(client, con, sync_id="bench", settings=settings)
        con.close()
    requests = report.client["requests"]
    rate = requests / report.seconds
    share_429 = report.client["rate_limited"] / requests
    note = (
        f"{len(ids):,} of {users:,} contacts, {requests:,} requests, "
        f"{report.counts.read:,} events stored in "
        f"{report.seconds:.1f} s at {RATE_LIMIT_PER_MINUTE:,}/min ({allowed:.1f}/s); "
        f"target: at least 90% of the allowed rate"
    )
    return [
        Figure(
            "events read at the default rate limit",
            "requests/s",
            rate,
            "allowed rate",
            allowed,
            "higher",
            note,
        ),
        Figure(
            "requests answered 429",
            "%",
            100 * share_429,
            "target",
            1.0,
            "lower",
            f"{report.client['rate_limited']:,} of {requests:,}; target under 1%",
        ),
    ]


def _sequential(env: dict[str, str], ids: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    with IntercomClient(env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"]) as client:
        events = sum(len(list(client.list_events(intercom_user_id=i))) for i in ids)
        requests = client.stats.requests
    return requests / (time.perf_counter() - started), events


def _concurrent(env: dict[str, str], ids: list[str], concurrency: int) -> tuple[float, int]:
    async def run() -> tuple[float, int]:
        semaphore = asyncio.Semaphore(concurrency)
        async with AsyncIntercomClient(
            env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"], max_connections=concurrency
        ) as client:

            async def one(contact: str) -> int:
                async with semaphore:
                    return len([e async for e in client.list_events(intercom_user_id=contact)])

            started = time.perf_counter()
            counts = await asyncio.gather(*(one(i) for i in ids))
            return client.stats.requests / (time.perf_counter() - started), sum(counts)

    return asyncio.run(run())


def _unlimited_read(users: int, size: int) -> list[Figure]:
    concurrency = IngestSettings().event_concurrency
    with _sandbox(users, 10**9) as env, tempfile.TemporaryDirectory() as tmp:
        con, ids = _contacts(env, Path(tmp), size)
        con.close()
        chosen = ids
        ours, our_events = _concurrent(env, chosen, concurrency)
        peer, peer_events = _sequential(env, chosen)
    if ours == 0 or our_events != peer_events:
        raise AssertionError(f"readers disagree: {our_events} events against {peer_events}")
    return [
        Figure(
            "events read, no rate limit",
            "requests/s",
            ours,
            "sequential reader (one request at a time)",
            peer,
            "higher",
            f"{len(chosen):,} contacts, {our_events:,} events, {concurrency} at a time; "
            "sandbox in its own process",
        )
    ]


def _latency_read(users: int, size: int) -> list[Figure]:
    # The sandbox's `slow` profile adds 0.25 s to every answer, as a distant API would; this
    # is where reading several contacts at a time pays.
    concurrency = IngestSettings().event_concurrency
    with _sandbox(users, 10**9, "slow") as env, tempfile.TemporaryDirectory() as tmp:
        con, ids = _contacts(env, Path(tmp), size)
        con.close()
        ours, our_events = _concurrent(env, ids, concurrency)
        peer, peer_events = _sequential(env, ids)
    if our_events != peer_events:
        raise AssertionError(f"readers disagree: {our_events} events against {peer_events}")
    return [
        Figure(
            "events read, 0.25 s answer latency",
            "requests/s",
            ours,
            "sequential reader (one request at a time)",
            peer,
            "higher",
            f"{len(ids):,} contacts, {our_events:,} events, {concurrency} at a time",
        )
    ]


@benchmark("ingest_events", "Intercom events read per contact: rate-limit use and concurrency")
def ingest_events() -> list[Figure]:
    users = int(os.environ.get("NEXTBEST_BENCH_INGEST_USERS", "20000"))
    size = int(os.environ.get("NEXTBEST_BENCH_INGEST_SLICE", "3000"))
    return (
        _rate_limited_read(users, size)
        + _unlimited_read(users, max(1, size // 3))
        + _latency_read(users, max(1, size // 15))
    )
