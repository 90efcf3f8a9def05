"""PostgreSQL fixtures: a reachable server, and a database of its own for every test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg2
import pytest

from deploy.postgres import drop_database, ensure_database

START_HINT = (
    "PostgreSQL is not reachable at {host}:{port}; start it with `.ci/run` (which runs "
    "`pg_ctlcluster <version> main start` when it is down) or set NEXTBEST_TEST_PG_HOST, "
    "NEXTBEST_TEST_PG_PORT and NEXTBEST_TEST_PG_USER to a server of yours"
)


@pytest.fixture(scope="session")
def pg_server() -> dict[str, object]:
    """Connection arguments of the test server's maintenance database; skips when it is down."""
    dsn: dict[str, object] = {
        "host": os.environ.get("NEXTBEST_TEST_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("NEXTBEST_TEST_PG_PORT", "5432")),
        "user": os.environ.get("NEXTBEST_TEST_PG_USER", "postgres"),
        "password": os.environ.get("NEXTBEST_TEST_PG_PASSWORD", ""),
        "dbname": "postgres",
    }
    try:
        psycopg2.connect(connect_timeout=3, **dsn).close()
    except psycopg2.OperationalError:
        pytest.skip(START_HINT.format(**dsn))
    return dsn


@pytest.fixture
def pg_database(pg_server: dict[str, object]) -> Iterator[dict[str, object]]:
    """A new, empty database `nextbest_test_<random>`, dropped after the test."""
    dsn = {**pg_server, "dbname": f"nextbest_test_{secrets.token_hex(4)}"}
    assert ensure_database(dsn)
    try:
        yield dsn
    finally:
        drop_database(dsn)


def query(dsn: dict[str, object], statement: str, params: tuple = ()) -> list[tuple]:
    """Rows of one query, on a connection of its own."""
    connection = psycopg2.connect(**dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()
    finally:
        connection.close()
