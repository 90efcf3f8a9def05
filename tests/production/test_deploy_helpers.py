"""The deploy helpers: the MLflow command line, URI handling, and the DuckDB-to-PostgreSQL copy."""

from __future__ import annotations

import datetime as dt
import shlex
from decimal import Decimal

import duckdb
import pytest
from typer.testing import CliRunner

from deploy.__main__ import app
from deploy.mlflow_server import backend_dsn, redacted, server_command, server_environment
from deploy.postgres import UnsupportedColumnError, copy_schema, postgres_type
from deploy.settings import DeploySettings
from tests.production.conftest import query


def _server_arguments(store: str, folder: str) -> list[str]:
    """`mlflow server`'s arguments for port 5123 and 3 workers, after the program."""
    return [
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        folder,
        "--host",
        "127.0.0.1",
        "--port",
        "5123",
        "--workers",
        "3",
        "--uvicorn-opts",
        "--timeout-worker-healthcheck 120",
    ]


def test_the_mlflow_command_names_the_postgres_store_the_folder_and_the_port(tmp_path):
    settings = DeploySettings(
        NEXTBEST_MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://ml:pw@db:5433/tracking",
        NEXTBEST_MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path),
        NEXTBEST_MLFLOW_PORT=5123,
        NEXTBEST_MLFLOW_WORKERS=3,
    )
    assert server_command(settings, executable="mlflow") == [
        "mlflow",
        *_server_arguments("postgresql+psycopg2://ml:pw@db:5433/tracking", str(tmp_path)),
    ]
    assert settings.mlflow_server_uri == "http://127.0.0.1:5123"


def test_the_dry_run_prints_a_command_a_shell_can_run_as_given(tmp_path, monkeypatch):
    folder = tmp_path / "model files"
    monkeypatch.setenv(
        "NEXTBEST_MLFLOW_BACKEND_STORE_URI", "postgresql+psycopg2://ml:pw@db:5433/tracking"
    )
    monkeypatch.setenv("NEXTBEST_MLFLOW_ARTIFACTS_DESTINATION", str(folder))
    monkeypatch.setenv("NEXTBEST_MLFLOW_PORT", "5123")
    monkeypatch.setenv("NEXTBEST_MLFLOW_WORKERS", "3")
    result = CliRunner().invoke(app, ["mlflow-server", "--dry-run"])
    assert result.exit_code == 0, result.output
    words = shlex.split(result.output)
    assert words[0].endswith("/mlflow"), words
    assert words[1:] == _server_arguments(
        "postgresql+psycopg2://ml:***@db:5433/tracking", str(folder)
    )


def test_a_postgres_uri_gives_connection_arguments_and_prints_without_its_password():
    uri = "postgresql+psycopg2://ml%40corp:s%3Acret@db.internal:6543/tracking"
    assert backend_dsn(uri) == {
        "host": "db.internal",
        "port": 6543,
        "user": "ml@corp",
        "password": "s:cret",
        "dbname": "tracking",
    }
    assert redacted(uri) == "postgresql+psycopg2://ml%40corp:***@db.internal:6543/tracking"
    assert backend_dsn("sqlite:///tmp/mlflow.db") is None
    assert redacted("sqlite:///tmp/mlflow.db") == "sqlite:///tmp/mlflow.db"


@pytest.mark.parametrize(
    ("duckdb_type", "expected"),
    [
        ("VARCHAR", ("text", False)),
        ("JSON", ("jsonb", False)),
        ("TIMESTAMP WITH TIME ZONE", ("timestamptz", False)),
        ("DECIMAL(18,3)", ("numeric(18,3)", False)),
        ("VARCHAR[]", ("jsonb", True)),
        ("STRUCT(a INTEGER)", ("jsonb", True)),
    ],
)
def test_duckdb_types_map_to_postgres_types(duckdb_type, expected):
    assert postgres_type(duckdb_type) == expected


def test_a_type_without_a_postgres_counterpart_is_refused_by_name():
    with pytest.raises(UnsupportedColumnError, match="UNION"):
        postgres_type("UNION(a INTEGER, b VARCHAR)")


@pytest.mark.postgres
def test_the_copy_keeps_nulls_empty_strings_json_and_timestamps(tmp_path, pg_database):
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw.sample (id varchar, n bigint, payload json, ok boolean, "
            "seen timestamp, tags varchar[], amount decimal(10, 2), note varchar)"
        )
        con.execute(
            """insert into raw.sample values
            ('a', 1, '{"x": "comma, \\"quote\\""}', true, '2024-02-29 23:59:59.123456',
             ['p', 'q'], 1.50, ''),
            ('multi
line', 2, '[]', false, '2024-01-01 00:00:00', [], 0, 'text'),
            (null, null, null, null, null, null, null, null)"""
        )
    (copied,) = copy_schema(warehouse, pg_database)
    assert (copied.name, copied.rows) == ("sample", 3)
    rows = query(
        pg_database,
        "select id, n, payload ->> 'x', ok, seen, tags, amount, note, note is null "
        "from raw.sample order by n nulls last",
    )
    assert rows == [
        (
            "a",
            1,
            'comma, "quote"',
            True,
            dt.datetime(2024, 2, 29, 23, 59, 59, 123456),
            ["p", "q"],
            Decimal("1.50"),
            "",
            False,
        ),
        ("multi\nline", 2, None, False, dt.datetime(2024, 1, 1), [], Decimal("0"), "text", False),
        (None, None, None, None, None, None, None, None, True),
    ]
    column_types = query(
        pg_database,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'sample' order by ordinal_position",
    )
    assert [t for _, t in column_types] == [
        "text",
        "bigint",
        "jsonb",
        "boolean",
        "timestamp without time zone",
        "jsonb",
        "numeric",
        "text",
    ]


def test_the_server_runs_without_mlflow_job_runner_unless_asked_for():
    assert server_environment({})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    chosen = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    assert server_environment(chosen)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
