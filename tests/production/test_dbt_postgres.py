"""The dbt project on its second engine: `dbt build --target postgres` against the DuckDB run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from deploy.postgres import copy_schema
from tests.production.conftest import query

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
USERS, SEED = 200, 11
LABEL_COLUMNS = (
    "user_id, signed_up_at, first_payment_at, window_ends_at, converted_within_window, "
    "days_to_convert, is_censored, history_complete"
)


def dbt(command: list[str], env: dict[str, str], log: Path) -> None:
    dbt_bin = str(Path(sys.executable).with_name("dbt"))
    done = subprocess.run(
        [dbt_bin, *command, "--project-dir", str(ROOT), "--profiles-dir", str(ROOT)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"dbt {' '.join(command)} failed:\n{done.stdout[-4000:]}"


@pytest.mark.slow
def test_dbt_build_on_postgres_gives_the_labels_duckdb_gives(tmp_path, pg_database):
    from sandbox.export import write_raw
    from sandbox.runner import build_dataset_store
    from sandbox.synthetic import synthetic_event_log

    cache = tmp_path / "cache"
    warehouse = tmp_path / "warehouse.duckdb"
    store = build_dataset_store("synthetic", users=USERS, seed=SEED, cache_dir=cache, dirt=False)
    with duckdb.connect(str(warehouse)) as con:
        write_raw(store, con)

    # The expected labels, from the generated log with pandas: sign-up is a user's first
    # event, conversion the first conversion event, within seven days.
    log = synthetic_event_log(USERS, SEED, cache)
    events = log.events
    signup = events.groupby("user_id")["timestamp"].min()
    paid = events[events["event"] == log.conversion_event].groupby("user_id")["timestamp"].min()
    expected_converted = int(((paid - signup.reindex(paid.index)) <= 7 * 86400).sum())

    common = {
        "NEXTBEST_WAREHOUSE": str(warehouse),
        "DBT_LOG_PATH": str(tmp_path / "dbt_logs"),
    }
    dbt(
        ["build", "--select", "+fct_conversion_labels", "--resource-type", "seed", "model"],
        {**common, "DBT_TARGET_PATH": str(tmp_path / "target_duckdb")},
        tmp_path / "duckdb.log",
    )

    copied = {table.name: table.rows for table in copy_schema(warehouse, pg_database)}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert (
            copied["intercom_events"]
            == con.execute("select count(*) from raw.intercom_events").fetchone()[0]
        )
        duckdb_labels = sorted(
            con.execute(f"select {LABEL_COLUMNS} from marts.fct_conversion_labels").fetchall()
        )

    # Every model, data test and unit test of the project, on PostgreSQL.
    dbt(
        ["build"],
        {
            **common,
            "DBT_TARGET_PATH": str(tmp_path / "target_postgres"),
            "NEXTBEST_DBT_TARGET": "postgres",
            "NEXTBEST_PG_HOST": str(pg_database["host"]),
            "NEXTBEST_PG_PORT": str(pg_database["port"]),
            "NEXTBEST_PG_USER": str(pg_database["user"]),
            "NEXTBEST_PG_PASSWORD": str(pg_database["password"]),
            "NEXTBEST_PG_DB": str(pg_database["dbname"]),
        },
        tmp_path / "postgres.log",
    )
    postgres_labels = sorted(
        query(pg_database, f"select {LABEL_COLUMNS} from marts.fct_conversion_labels")
    )

    assert len(postgres_labels) == signup.size == USERS
    assert sum(row[4] for row in postgres_labels) == expected_converted > 0
    # Row for row the same labels, down to the fractional days to convert.
    assert postgres_labels == duckdb_labels
