"""PostgreSQL helpers: create the service databases, and copy DuckDB tables into PostgreSQL.

The copy serves the dbt `postgres` target: the ingestion stage writes the raw layer to DuckDB,
and `copy_schema` puts the same rows into a PostgreSQL schema of the same name, so that
`dbt build --target postgres` reads exactly what the DuckDB build reads.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg2
from psycopg2 import sql

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

# DuckDB type (its `data_type` in information_schema, without arguments) -> PostgreSQL type.
# JSON goes to jsonb so that `->>` and the json functions work on the payloads.
_SCALAR_TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "smallint",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric",
    "HUGEINT": "numeric",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "UUID": "uuid",
    "BLOB": "bytea",
    "JSON": "jsonb",
}


class UnsupportedColumnError(ValueError):
    """A DuckDB column whose type has no PostgreSQL counterpart in the copy."""


@dataclass(frozen=True)
class CopiedTable:
    """One table copied from DuckDB to PostgreSQL."""

    name: str
    rows: int
    seconds: float


def postgres_type(duckdb_type: str) -> tuple[str, bool]:
    """The PostgreSQL column type for a DuckDB one.

    Args:
        duckdb_type: DuckDB's type name as `information_schema.columns.data_type` gives it.

    Returns:
        The PostgreSQL type, and whether the value must travel as JSON text (lists, structs
        and maps become jsonb).

    Raises:
        UnsupportedColumnError: for a type with no counterpart (e.g. a union).
    """
    name = duckdb_type.strip().upper()
    if name.startswith("DECIMAL") or name.startswith("NUMERIC"):
        return name.lower().replace("decimal", "numeric"), False
    if name.endswith("[]") or name.startswith(("STRUCT", "MAP", "LIST")):
        return "jsonb", True
    base = name.split("(")[0].strip()
    if base in _SCALAR_TYPES:
        return _SCALAR_TYPES[base], False
    raise UnsupportedColumnError(f"DuckDB type {duckdb_type!r} has no PostgreSQL mapping")


def server_dsn(dsn: Mapping[str, object]) -> dict[str, object]:
    """The same server as `dsn`, connected to the `postgres` maintenance database."""
    return {**dsn, "dbname": "postgres"}


def ensure_database(dsn: Mapping[str, object]) -> bool:
    """Create the database `dsn` names when it does not exist yet.

    Returns:
        True when the database was created, False when it already existed.
    """
    name = str(dsn["dbname"])
    connection = psycopg2.connect(**server_dsn(dsn))
    try:
        # CREATE DATABASE cannot run inside a transaction block.
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("select 1 from pg_database where datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            logger.info("created database %s on %s:%s", name, dsn.get("host"), dsn.get("port"))
            return True
    finally:
        connection.close()


def drop_database(dsn: Mapping[str, object]) -> None:
    """Drop the database `dsn` names, closing its open connections first."""
    connection = psycopg2.connect(**server_dsn(dsn))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(str(dsn["dbname"]))
                )
            )
    finally:
        connection.close()


def copy_schema(
    warehouse: Path, dsn: Mapping[str, object], schema: str = "raw"
) -> list[CopiedTable]:
    """Copy every table of one DuckDB schema into the PostgreSQL schema of the same name.

    Each table is dropped and created again with the mapped column types (views built on
    it by dbt go with it and come back with the next `dbt build`), then filled by COPY from
    a CSV that DuckDB writes. NULL and the empty string stay apart: DuckDB quotes empty
    strings and leaves NULL bare, which is what PostgreSQL's CSV format expects.

    Args:
        warehouse: the DuckDB file, opened read-only.
        dsn: psycopg2 connection arguments of the target database.
        schema: the schema to copy, `raw` by default.

    Returns:
        One entry per table with its row count, in name order.
    """
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"schema name {schema!r} is not a plain lowercase identifier")
    copied: list[CopiedTable] = []
    with duckdb.connect(str(warehouse), read_only=True) as source:
        tables = [
            row[0]
            for row in source.execute(
                "select table_name from information_schema.tables "
                "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
                [schema],
            ).fetchall()
        ]
        if not tables:
            raise ValueError(f"{warehouse} has no tables in schema {schema!r}")
        target = psycopg2.connect(**dsn)
        try:
            with target.cursor() as cursor:
                cursor.execute(
                    sql.SQL("create schema if not exists {}").format(sql.Identifier(schema))
                )
            with tempfile.TemporaryDirectory(prefix="nextbest-copy-") as scratch:
                for table in tables:
                    copied.append(
                        _copy_table(source, target, schema, table, Path(scratch) / "rows.csv")
                    )
            target.commit()
        except BaseException:
            target.rollback()
            raise
        finally:
            target.close()
    return copied


def _copy_table(
    source: duckdb.DuckDBPyConnection,
    target: psycopg2.extensions.connection,
    schema: str,
    table: str,
    scratch: Path,
) -> CopiedTable:
    started = time.monotonic()
    columns = source.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    definitions, selected = [], []
    for column, duckdb_type in columns:
        try:
            pg_type, as_json = postgres_type(duckdb_type)
        except UnsupportedColumnError as error:
            raise UnsupportedColumnError(f"{schema}.{table}.{column}: {error}") from error
        definitions.append(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(pg_type)))
        quoted = '"' + column.replace('"', '""') + '"'
        selected.append(f"to_json({quoted})::varchar" if as_json else quoted)
    source_table = f'"{schema}"."{table}"'
    source.execute(
        f"copy (select {', '.join(selected)} from {source_table}) to '{scratch}' "
        "(format csv, header false)"
    )
    qualified = sql.Identifier(schema, table)
    with target.cursor() as cursor:
        cursor.execute(sql.SQL("drop table if exists {} cascade").format(qualified))
        cursor.execute(
            sql.SQL("create table {} ({})").format(qualified, sql.SQL(", ").join(definitions))
        )
        with scratch.open("rb") as rows:
            cursor.copy_expert(
                sql.SQL("copy {} from stdin with (format csv)").format(qualified).as_string(cursor),
                rows,
            )
        cursor.execute(sql.SQL("select count(*) from {}").format(qualified))
        (count,) = cursor.fetchone()
    seconds = time.monotonic() - started
    logger.info("copied %s.%s: %d rows in %.2f s", schema, table, count, seconds)
    return CopiedTable(table, count, seconds)
