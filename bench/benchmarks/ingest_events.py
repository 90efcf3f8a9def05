"""Reading Intercom events per contact: rate-limit use, 429s, and speed against a sequential reader.

The sandbox runs in its own process (`nextbest sandbox serve` on a free loopback port), as a
real service would, so the reader and the server do not share one interpreter; the CPU each
side spends a request is measured from the two processes. The sandbox holds
NEXTBEST_BENCH_INGEST_USERS synthetic users (default 20,000); the rate-limited read stores the
events of NEXTBEST_BENCH_INGEST_SLICE of them (default 8,000: five 10-second rate-limit
windows at the default limit), and the unlimited comparison reads a quarter of that slice
both ways. Each part prints one line with its numbers and the load average.
"""

import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.harness import Figure, benchmark
from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient
from orchestration.clients.retrying import parse_int_header
from orchestration.ingest.intercom import sync_contacts, sync_events
from orchestration.ingest.settings import IngestSettings
from orchestration.warehouse import connect, ensure_raw_tables

RATE_LIMIT_PER_MINUTE = 10_000  # the sandbox's default, Intercom's documented app limit
WINDOW_SECONDS = 10  # Intercom counts the limit in 10-second windows
PER_WINDOW = math.ceil(RATE_LIMIT_PER_MINUTE * WINDOW_SECONDS / 60)
ALLOWED_PER_SECOND = PER_WINDOW / WINDOW_SECONDS
# At the allowed rate, two cores give 2 / 166.7 s = 12 ms of CPU a request to reader and server.
CPU_BUDGET_MS = 1000 * 2 / ALLOWED_PER_SECOND


@dataclass
class Sandbox:
    """A sandbox process: its environment lines and the process, for its CPU time."""

    env: dict[str, str]
    process: psutil.Process


@contextmanager
def _sandbox(users: int, rate_limit: int, faults: str = "none") -> Iterator[Sandbox]:
    env = os.environ | {
        "NEXTBEST_SANDBOX_RATE_LIMIT": str(rate_limit),
        "NEXTBEST_SANDBOX_USERS": str(users),
        "NEXTBEST_SANDBOX_SEED": "0",
        "NEXTBEST_SANDBOX_FAULTS": faults,
    }
    command = [sys.executable, "-m", "orchestration.cli", "sandbox", "serve"]
    command += ["--dataset", "synthetic", "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    found: dict[str, str] = {}
    try:
        assert process.stdout is not None
        # `serve` prints its export lines, then the admin line once it answers requests.
        for line in process.stdout:
            match = re.match(r"export (\w+)=(\S+)", line.strip())
            if match:
                found[match.group(1)] = match.group(2)
            if "admin:" in line:
                break
        if "INTERCOM_BASE_URL" not in found:
            raise RuntimeError(f"the sandbox did not start (exit {process.poll()}): {found}")
        # Keep reading what it prints, so a full pipe never stalls the server.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield Sandbox(found, psutil.Process(process.pid))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()  # every thread of the process, not its children
    return times.user + times.system


@dataclass
class Measured:
    """Requests a second and CPU milliseconds a request of both sides, for one read."""

    requests: int
    seconds: float
    client_ms: float
    server_ms: float
    load: tuple[float, float]
    machine_busy: float
    ours_busy: float

    @property
    def rate(self) -> float:
        """Requests a second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        """The numbers as one phrase for the printed line and the figure notes."""
        return (
            f"{self.requests:,} requests in {self.seconds:.1f} s = {self.rate:.1f}/s; CPU a "
            f"request: reader {self.client_ms:.2f} ms, sandbox {self.server_ms:.2f} ms; "
            f"load average {self.load[0]:.1f} at the start, {self.load[1]:.1f} at the end; "
            f"the cores were {100 * self.machine_busy:.0f}% busy, {100 * self.ours_busy:.0f}% "
            "with the reader and the sandbox"
        )


def _measure(sandbox: Sandbox, read: Callable[[], int]) -> Measured:
    """Run `read` (which returns its request count) and take time and both sides' CPU."""
    me = psutil.Process()
    load = os.getloadavg()[0]
    client, server = _cpu(me), _cpu(sandbox.process)
    machine = psutil.cpu_times()
    started = time.perf_counter()
    requests = read()
    seconds = time.perf_counter() - started
    after = psutil.cpu_times()
    client, server = _cpu(me) - client, _cpu(sandbox.process) - server
    # Busy time of every core, whoever used it: with the cores busy and little of it ours,
    # the read was short of CPU, not of rate-limit budget.
    total = sum(after) - sum(machine)
    idle = (after.idle + after.iowait) - (machine.idle + machine.iowait)
    capacity = seconds * (psutil.cpu_count() or 1)
    per_request = 1000 / max(1, requests)
    return Measured(
        requests=requests,
        seconds=seconds,
        client_ms=client * per_request,
        server_ms=server * per_request,
        load=(load, os.getloadavg()[0]),
        machine_busy=(total - idle) / total if total > 0 else 0.0,
        ours_busy=(client + server) / capacity,
    )


class _WindowCountingClient(AsyncIntercomClient):
    """The events client, counting the answers that spent budget in each rate-limit window."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_window: Counter[int] = Counter()

    def _check(self, response: httpx.Response) -> dict | None:
        # The window is the server's, named by its reset: an answer may arrive in the next one.
        reset = parse_int_header(response.headers, "X-RateLimit-Reset")
        if response.status_code != 429 and reset is not None:
            self.per_window[reset // WINDOW_SECONDS - 1] += 1
        return super()._check(response)


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
    settings = IngestSettings().model_copy(update={"progress_every": 10**9})
    concurrency = settings.event_concurrency
    with _sandbox(users, RATE_LIMIT_PER_MINUTE) as sb, tempfile.TemporaryDirectory() as tmp:
        con, ids = _contacts(sb.env, Path(tmp), size)
        # Start on a fresh rate-limit window, so the first one is not half spent already.
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS)
        first_window = int(time.time() // WINDOW_SECONDS)
        client = _WindowCountingClient(
            sb.env["INTERCOM_BASE_URL"],
            sb.env["INTERCOM_ACCESS_TOKEN"],
            max_connections=concurrency,
        )
        reports = []

        def read() -> int:
            reports.append(sync_events(client, con, sync_id="bench", settings=settings))
            return int(reports[0].client["requests"])

        measured = _measure(sb, read)
        con.close()
    report = reports[0]
    limited = int(report.client["rate_limited"])
    share_429 = limited / measured.requests
    # Answers a window, from the read's first window to that of its last answer: full windows
    # (1,667) mean the reader kept up with the limit; fewer, but the last, that it fell behind.
    windows = max(client.per_window) - first_window + 1
    counts = [client.per_window[first_window + k] for k in range(windows)]
    # The steady rate: the windows before the last, which the read spent whole. Over the whole
    # read the rate may pass the allowed one, as a window's calls may all go in its first
    # seconds and the read end there.
    whole = counts[:-1] or counts
    steady = sum(whole) / (WINDOW_SECONDS * len(whole))
    print(
        f"ingest_events, rate limit {RATE_LIMIT_PER_MINUTE:,}/min ({ALLOWED_PER_SECOND:.1f}/s, "
        f"{PER_WINDOW:,} a {WINDOW_SECONDS}-s window): {len(ids):,} contacts, "
        f"{report.counts.read:,} events stored, {measured.describe()}; "
        f"{100 * measured.rate / ALLOWED_PER_SECOND:.1f}% of the allowed rate; answers a "
        f"window: {', '.join(f'{n:,}' for n in counts)}, {steady:.1f}/s "
        f"({100 * steady / ALLOWED_PER_SECOND:.1f}%) over the {len(whole)} before the last; "
        f"{limited:,} answered 429 ({100 * share_429:.2f}%); {concurrency} at a time; "
        f"throttled {report.client['seconds_throttled']:.0f} s (summed over requests)",
        flush=True,
    )
    size_note = (
        f"{len(ids):,} of {users:,} contacts, {report.counts.read:,} events stored, "
        f"{concurrency} at a time; {measured.describe()}"
    )
    return [
        Figure(
            "events read at the default rate limit, whole windows",
            "requests/s",
            steady,
            "allowed rate",
            ALLOWED_PER_SECOND,
            "higher",
            f"answers in the {len(whole)} windows before the last, over their "
            f"{WINDOW_SECONDS * len(whole)} s; target: at least 90% of the allowed rate",
        ),
        Figure(
            "events read at the default rate limit",
            "requests/s",
            measured.rate,
            "allowed rate",
            ALLOWED_PER_SECOND,
            "higher",
            f"{size_note}; answers in each {WINDOW_SECONDS}-s window: "
            f"{', '.join(f'{n:,}' for n in counts)}; target: at least 90% of the allowed rate",
        ),
        Figure(
            "requests answered 429",
            "%",
            100 * share_429,
            "target",
            1.0,
            "lower",
            f"{limited:,} of {measured.requests:,}; target under 1%",
        ),
        Figure(
            "CPU a request, reader and sandbox",
            "ms",
            measured.client_ms + measured.server_ms,
            "2 cores at the allowed rate",
            CPU_BUDGET_MS,
            "lower",
            f"reader {measured.client_ms:.2f} ms (requests, parsing, DuckDB writes), sandbox "
            f"{measured.server_ms:.2f} ms; load average {measured.load[0]:.1f} to "
            f"{measured.load[1]:.1f}",
        ),
    ]


def _sequential(env: dict[str, str], ids: list[str]) -> tuple[int, int]:
    with IntercomClient(env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"]) as client:
        events = sum(len(list(client.list_events(intercom_user_id=i))) for i in ids)
        return client.stats.requests, events


def _concurrent(env: dict[str, str], ids: list[str], concurrency: int) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        semaphore = asyncio.Semaphore(concurrency)
        async with AsyncIntercomClient(
            env["INTERCOM_BASE_URL"], env["INTERCOM_ACCESS_TOKEN"], max_connections=concurrency
        ) as client:

            async def one(contact: str) -> int:
                async with semaphore:
                    return len([e async for e in client.list_events(intercom_user_id=contact)])

            counts = await asyncio.gather(*(one(i) for i in ids))
            return client.stats.requests, sum(counts)

    return asyncio.run(run())


def _both_readers(users: int, size: int, faults: str) -> tuple[Measured, Measured, int, int, int]:
    """Our concurrent reader and the sequential peer over the same contacts, one sandbox."""
    concurrency = IngestSettings().event_concurrency
    with _sandbox(users, 10**9, faults) as sb, tempfile.TemporaryDirectory() as tmp:
        con, ids = _contacts(sb.env, Path(tmp), size)
        con.close()
        events: dict[str, int] = {}

        def ours() -> int:
            requests, events["ours"] = _concurrent(sb.env, ids, concurrency)
            return requests

        def peer() -> int:
            requests, events["peer"] = _sequential(sb.env, ids)
            return requests

        measured_ours, measured_peer = _measure(sb, ours), _measure(sb, peer)
    if measured_ours.requests == 0 or events["ours"] != events["peer"]:
        raise AssertionError(f"readers disagree: {events['ours']} events against {events['peer']}")
    return measured_ours, measured_peer, len(ids), events["ours"], concurrency


def _unlimited_read(users: int, size: int) -> list[Figure]:
    ours, peer, contacts, events, concurrency = _both_readers(users, size, "none")
    print(
        f"ingest_events, no rate limit: {contacts:,} contacts, {events:,} events; "
        f"{concurrency} at a time: {ours.describe()}; sequential: {peer.describe()}",
        flush=True,
    )
    return [
        Figure(
            "events read, no rate limit",
            "requests/s",
            ours.rate,
            "sequential reader (one request at a time)",
            peer.rate,
            "higher",
            f"{contacts:,} contacts, {events:,} events, {concurrency} at a time, nothing stored; "
            f"ours: {ours.describe()}; sequential: {peer.describe()}",
        )
    ]


def _latency_read(users: int, size: int) -> list[Figure]:
    # The sandbox's `slow` profile adds 0.25 s to every answer, as a distant API would; this
    # is where reading several contacts at a time pays.
    ours, peer, contacts, events, concurrency = _both_readers(users, size, "slow")
    print(
        f"ingest_events, 0.25 s answer latency: {contacts:,} contacts; {concurrency} at a time: "
        f"{ours.rate:.1f}/s; sequential: {peer.rate:.1f}/s",
        flush=True,
    )
    return [
        Figure(
            "events read, 0.25 s answer latency",
            "requests/s",
            ours.rate,
            "sequential reader (one request at a time)",
            peer.rate,
            "higher",
            f"{contacts:,} contacts, {events:,} events, {concurrency} at a time",
        )
    ]


@benchmark("ingest_events", "Intercom events read per contact: rate-limit use and concurrency")
def ingest_events() -> list[Figure]:
    users = int(os.environ.get("NEXTBEST_BENCH_INGEST_USERS", "20000"))
    size = int(os.environ.get("NEXTBEST_BENCH_INGEST_SLICE", "8000"))
    return (
        _rate_limited_read(users, size)
        + _unlimited_read(users, max(1, size // 4))
        + _latency_read(users, max(1, size // 40))
    )
