"""Fixtures of the transformation tests: dbt runs against throw-away warehouses."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from orchestration.settings import PROJECT_ROOT

DBT = Path(PROJECT_ROOT) / ".venv" / "bin" / "dbt"


def run_dbt(
    warehouse: Path, workdir: Path, *args: str, dbt_vars: dict | None = None
) -> subprocess.CompletedProcess:
    """Run dbt on `warehouse` with its target and logs under `workdir`; raise on failure."""
    command = [
        str(DBT),
        *args,
        "--project-dir",
        str(PROJECT_ROOT),
        "--profiles-dir",
        str(PROJECT_ROOT),
        "--target-path",
        str(workdir / "target"),
        "--log-path",
        str(workdir / "logs"),
    ]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]
    env = os.environ | {"NEXTBEST_WAREHOUSE": str(warehouse), "DBT_SEND_ANONYMOUS_USAGE_STATS": "0"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}")
    return result


@pytest.fixture(scope="session")
def dbt_build() -> Callable[..., subprocess.CompletedProcess]:
    """`dbt_build(warehouse, workdir, **vars)` runs `dbt build` and returns the process."""

    def build(warehouse: Path, workdir: Path, **dbt_vars: object) -> subprocess.CompletedProcess:
        return run_dbt(warehouse, workdir, "build", dbt_vars=dbt_vars or None)

    return build


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of `sql` on a read-only connection to `warehouse`."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()
