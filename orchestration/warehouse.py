"""The DuckDB warehouse: connections and the raw layer's tables.

The raw layer keeps every object exactly as the API gave it (`payload`, the whole JSON) beside
the few columns loads and incremental reads need. dbt's staging models read `payload`; nothing
else parses it. See docs/warehouse.md for the contract between the stages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from orchestration.settings import make_folder

RAW_SCHEMA = "raw"

# One table per stream. Every object table has the same shape, so one upsert serves them all.
OBJECT_TABLES = (
    "intercom_contacts",
    "intercom_companies",
    "stripe_customers",
    "stripe_subscriptions",
    "stripe_invoices",
    "stripe_charges",
    "stripe_refunds",
)

_OBJECT_COLUMNS = """
    id varchar primary key,
    updated_at bigint,
    payload json not null,
    is_deleted boolean not null default false,
    deleted_reason varchar,
    sync_id varchar not null,
    loaded_at timestamptz not null
"""

RAW_DDL = [f"create schema if not exists {RAW_SCHEMA}"]
RAW_DDL += [
    f"create table if not exists {RAW_SCHEMA}.{table} ({_OBJECT_COLUMNS})"
    for table in OBJECT_TABLES
]
RAW_DDL += [
    f"""create table if not exists {RAW_SCHEMA}.intercom_contact_companies (
        contact_id varchar not null,
        company_id varchar not null,
        payload json,
        sync_id varchar not null,
        loaded_at timestamptz not null,
        primary key (contact_id, company_id)
    )""",
    # `id` is a stable key of (contact, event name, created_at): Intercom itself drops
    # duplicates of that triple, and exported events carry no Intercom id.
    f"""create table if not exists {RAW_SCHEMA}.intercom_events (
        id varchar primary key,
        intercom_event_id varchar,
        contact_id varchar,
        external_id varchar,
        email varchar,
        event_name varchar not null,
        created_at bigint not null,
        payload json not null,
        source varchar not null,
        sync_id varchar not null,
        loaded_at timestamptz not null
    )""",
    # From when each contact's event history is complete (Unix seconds): events before it
    # may be missing, so the models must not treat the journey as fully known.
    f"""create table if not exists {RAW_SCHEMA}.intercom_event_coverage (
        contact_id varchar primary key,
        external_id varchar,
        complete_from bigint not null,
        last_read_at bigint,
        contact_updated_at bigint,
        sync_id varchar not null,
        loaded_at timestamptz not null
    )""",
    # One row per record set aside (same stream, key, reason and payload): `sync_id` and
    # `loaded_at` say when it was first set aside, the `last_seen_*` columns when last.
    f"""create table if not exists {RAW_SCHEMA}.quarantine (
        stream varchar not null,
        record_key varchar,
        reason varchar not null,
        payload varchar,
        sync_id varchar not null,
        loaded_at timestamptz not null,
        last_seen_sync_id varchar,
        last_seen_at timestamptz,
        times_seen integer
    )""",
    f"""create table if not exists {RAW_SCHEMA}.sync_state (
        stream varchar primary key,
        cursor varchar,
        sync_id varchar not null,
        committed_at timestamptz not null
    )""",
]


class NotAWarehouse(duckdb.IOException):
    """The warehouse path is a directory or a file that is not a DuckDB database."""


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, creating its folder when missing.

    Raises:
        NotAWarehouse: The path is a directory, or an existing file that is not a DuckDB
            database (DuckDB would open a CSV or Parquet file as a table of an in-memory
            database, and every write would be lost on close).
    """
    path = Path(path)
    if path.is_dir():
        raise NotAWarehouse(f"warehouse {path} is a directory, not a DuckDB database file")
    if not read_only:
        make_folder(path.parent, "NEXTBEST_WAREHOUSE (or NEXTBEST_HOME, where it defaults)")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.CatalogException as error:
        # Read-only, DuckDB refuses the in-memory database it would make of such a file.
        raise NotAWarehouse(f"warehouse {path} is not a DuckDB database file") from error
    stored = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    if stored is None or stored[0] is None:
        con.close()
        raise NotAWarehouse(
            f"warehouse {path} is not a DuckDB database file; point NEXTBEST_WAREHOUSE at a "
            "new or existing .duckdb file"
        )
    return con


# The same record set aside again: the columns that tell it apart from another record.
QUARANTINE_IDENTITY = ("stream", "record_key", "reason", "payload")


def ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw layer's schema and tables when missing; existing tables are kept.

    A warehouse made before the quarantine recorded repeats gains those columns here.
    """
    for statement in RAW_DDL:
        con.execute(statement)
    _migrate_quarantine(con)


def _migrate_quarantine(con: duckdb.DuckDBPyConnection) -> None:
    columns = {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = 'quarantine' "
            "and table_catalog = current_database()",
            [RAW_SCHEMA],
        ).fetchall()
    }
    if "times_seen" in columns:
        return
    # Earlier versions added a row each time a record was set aside again: fold each
    # record's rows into its first, noting the last time and how many there were.
    identity = ", ".join(QUARANTINE_IDENTITY)
    con.execute("begin transaction")
    try:
        for name, kind in (
            ("last_seen_sync_id", "varchar"),
            ("last_seen_at", "timestamptz"),
            ("times_seen", "integer"),
        ):
            con.execute(
                f"alter table {RAW_SCHEMA}.quarantine add column if not exists {name} {kind}"
            )
        con.execute(
            f"""
            create or replace temp table _quarantine_folded as
            select {identity}, first(sync_id order by loaded_at, sync_id) as sync_id,
                min(loaded_at) as loaded_at,
                last(sync_id order by loaded_at, sync_id) as last_seen_sync_id,
                max(loaded_at) as last_seen_at, count(*)::integer as times_seen
            from {RAW_SCHEMA}.quarantine
            group by all
            """
        )
        con.execute(f"delete from {RAW_SCHEMA}.quarantine")
        con.execute(
            f"""
            insert into {RAW_SCHEMA}.quarantine by name
            select * from _quarantine_folded
            """
        )
        con.execute("drop table _quarantine_folded")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


@contextmanager
def warehouse(path: Path | str, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse with the raw layer in place, closed on exit."""
    con = connect(path, read_only=read_only)
    try:
        if not read_only:
            ensure_raw_tables(con)
        yield con
    finally:
        con.close()
