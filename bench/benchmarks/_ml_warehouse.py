"""A warehouse with marts for the model benchmarks and tests: sandbox data, raw layer, dbt.

It takes the short road the sandbox offers (the store written straight into the raw tables),
so measuring the models does not include ingestion over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def build_warehouse(
    path: Path,
    dataset: str,
    *,
    users: int | None = None,
    seed: int = 0,
    dirt: bool = True,
    cache_dir: Path | None = None,
    every_event: bool = False,
) -> dict[str, float]:
    """Write a sandbox dataset into `path`'s raw layer and build the marts with dbt.

    `every_event` adds a feature snapshot after every event: simple_shop's users pay within
    their first session, so session ends and day boundaries alone see almost no one before
    paying.

    Returns:
        Seconds spent building the store, writing raw tables and running dbt.
    """
    from sandbox.export import write_raw
    from sandbox.runner import build_dataset_store

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    store = build_dataset_store(dataset, dirt=dirt, users=users, seed=seed, cache_dir=cache_dir)
    seconds["store"] = time.perf_counter() - started
    started = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        write_raw(store, con)
    seconds["raw"] = time.perf_counter() - started
    started = time.perf_counter()
    dbt = Path(sys.executable).with_name("dbt")
    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | {"NEXTBEST_WAREHOUSE": str(path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "0"}
        done = subprocess.run(
            [
                str(dbt),
                "build",
                "--resource-type",
                "seed",
                "--resource-type",
                "model",
                "--project-dir",
                str(ROOT),
                "--profiles-dir",
                str(ROOT),
                "--target-path",
                str(Path(scratch) / "target"),
                "--log-path",
                str(Path(scratch) / "logs"),
                "--quiet",
                "--vars",
                json.dumps({"snapshot_after_every_event": every_event}),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    seconds["dbt"] = time.perf_counter() - started
    return seconds
