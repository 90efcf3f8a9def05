"""Loading a public event log: DuckDB's CSV reader against pandas.

The sandbox and `import-events` read event exports this way, so this is the floor for both.
"""

import time
from pathlib import Path

import duckdb
import pandas as pd

from bench.harness import Figure, benchmark

LOG = (
    Path(__file__).resolve().parents[2]
    / "sandbox"
    / "datasets"
    / "mobile_onboarding_2018"
    / "events.csv.gz"
)


def _best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


@benchmark("event_log_load", "read the mobile onboarding log: DuckDB against pandas")
def event_log_load() -> list[Figure]:
    def with_duckdb() -> int:
        with duckdb.connect() as con:
            return con.execute(f"select count(*) from read_csv('{LOG}')").fetchone()[0]

    def with_pandas() -> int:
        return len(pd.read_csv(LOG))

    ours, rows = _best_of(with_duckdb)
    peer, peer_rows = _best_of(with_pandas)
    if rows != peer_rows:
        raise AssertionError(f"readers disagree: duckdb {rows} rows, pandas {peer_rows}")
    return [
        Figure("load seconds", "s", ours, "pandas.read_csv", peer, note=f"{rows:,} events"),
        Figure(
            "events a second", "events/s", rows / ours, "pandas.read_csv", rows / peer, "higher"
        ),
    ]
