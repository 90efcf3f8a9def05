"""The sandbox at 100,000 users: generation time, and page latency against a naive store.

The peer for page latency is the obvious store: a pandas frame of all events scanned with a
boolean filter for each request (what a first version of a fake API does).
"""

import time

import numpy as np

from bench.harness import Figure, benchmark

USERS = 100_000


@benchmark("sandbox_synthetic", "synthetic 100k users: generation, store build, page latency")
def sandbox_synthetic() -> list[Figure]:
    from sandbox.datasets import EventLog
    from sandbox.mapping import build_store
    from sandbox.synthetic import CONVERSION_EVENT, generate

    started = time.perf_counter()
    log, _ = generate(USERS, seed=0)
    generation = time.perf_counter() - started
    started = time.perf_counter()
    store = build_store(EventLog("synthetic", log, CONVERSION_EVENT))
    build = time.perf_counter() - started

    rng = np.random.default_rng(0)
    picks = rng.integers(0, USERS, size=200)

    def indexed() -> None:
        for i in picks:
            store.contact_events(int(i))[:50]

    codes = log["user_id"].cat.codes.to_numpy()
    times = log["timestamp"].to_numpy()

    def full_scan() -> None:
        for i in picks[:20]:
            hit = np.flatnonzero(codes == i)
            np.sort(times[hit])[::-1][:50]

    started = time.perf_counter()
    indexed()
    ours = (time.perf_counter() - started) / len(picks) * 1000
    started = time.perf_counter()
    full_scan()
    peer = (time.perf_counter() - started) / 20 * 1000
    started = time.perf_counter()
    for i in picks:
        [store.render_contact(int(j)) for j in store.live_positions(int(i), 150)]
    contacts_page = (time.perf_counter() - started) / len(picks) * 1000
    return [
        Figure(
            "generation seconds",
            "s",
            generation,
            note=f"{USERS:,} users, {len(log):,} events; target under 120 s",
        ),
        Figure("store build seconds", "s", build, note=f"{len(store.events):,} events"),
        Figure("events page ms", "ms", ours, "full scan of the event frame", peer),
        Figure("contacts page of 150 ms", "ms", contacts_page, note="rendered contacts"),
    ]
