"""The activation layer of the warehouse: what was written to Intercom, and every attempt.

- `intercom_attribute_state`: the last value successfully written per contact and attribute,
  as JSON text (`null` once cleared). The next run compares against it, so an unchanged
  recommendation costs no request.
- `intercom_write_audit`: one row per attribute of every attempt, dry runs included.
- `intercom_gone_contacts`: contacts that answered 404 (merged, deleted or archived); they are
  skipped until they reappear in the raw layer as live contacts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

SCHEMA = "activation"
STATE_TABLE = f"{SCHEMA}.intercom_attribute_state"
AUDIT_TABLE = f"{SCHEMA}.intercom_write_audit"
GONE_TABLE = f"{SCHEMA}.intercom_gone_contacts"

DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {STATE_TABLE} (
        contact_id varchar not null,
        attribute varchar not null,
        value varchar,
        written_at timestamptz not null,
        run_id varchar not null,
        primary key (contact_id, attribute)
    )""",
    f"""create table if not exists {AUDIT_TABLE} (
        contact_id varchar not null,
        user_id varchar,
        attribute varchar not null,
        old_value varchar,
        new_value varchar,
        status varchar not null,
        http_status integer,
        message varchar,
        attempted_at timestamptz not null,
        run_id varchar not null,
        dry_run boolean not null
    )""",
    f"""create table if not exists {GONE_TABLE} (
        contact_id varchar primary key,
        http_status integer,
        message varchar,
        seen_at timestamptz not null,
        run_id varchar not null
    )""",
)

# Statuses of an audit row. `planned` only appears in dry runs.
OK = "ok"
PLANNED = "planned"
INVALID = "invalid"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
ERROR = "error"
NOT_SENT = "not_sent"
FAILED_STATUSES = (INVALID, NOT_FOUND, BAD_REQUEST, ERROR, NOT_SENT)


def to_json(value: Any) -> str | None:
    """The stored form of a sent value: JSON text, or SQL null for an unset attribute."""
    return None if value is None else json.dumps(value)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the activation schema and tables when missing; existing rows are kept."""
    for statement in DDL:
        con.execute(statement)


@dataclass(frozen=True)
class AuditRow:
    """One attribute of one attempt."""

    contact_id: str
    user_id: str | None
    attribute: str
    old_value: str | None
    new_value: str | None
    status: str
    http_status: int | None
    message: str | None
    attempted_at: datetime


def read_state(
    con: duckdb.DuckDBPyConnection, contact_ids: Iterable[str] | None = None
) -> dict[str, dict[str, str | None]]:
    """Last written value per contact and attribute, as JSON text.

    Args:
        con: The warehouse.
        contact_ids: Only these contacts; all when None.
    """
    sql = f"select contact_id, attribute, value from {STATE_TABLE}"
    params: list[Any] = []
    if contact_ids is not None:
        sql += " where contact_id in (select unnest(?::varchar[]))"
        params.append(list(contact_ids))
    state: dict[str, dict[str, str | None]] = {}
    for contact_id, attribute, value in con.execute(sql, params).fetchall():
        state.setdefault(contact_id, {})[attribute] = value
    return state


def read_gone(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Contacts that answered 404 and have not come back as live contacts since."""
    gone = {row[0] for row in con.execute(f"select contact_id from {GONE_TABLE}").fetchall()}
    if gone and _table_exists(con, "raw", "intercom_contacts"):
        # A contact the ingestion saw alive after our 404 (say, restored) is writable again.
        revived = con.execute(
            f"""select g.contact_id from {GONE_TABLE} as g
            join raw.intercom_contacts as c on c.id = g.contact_id
            where not c.is_deleted and c.loaded_at > g.seen_at"""
        ).fetchall()
        gone -= {row[0] for row in revived}
    if _table_exists(con, "raw", "intercom_contacts"):
        tombstones = con.execute("select id from raw.intercom_contacts where is_deleted").fetchall()
        gone |= {row[0] for row in tombstones}
    return gone


def record_attempts(
    con: duckdb.DuckDBPyConnection, rows: list[AuditRow], run_id: str, *, dry_run: bool
) -> None:
    """Append attempts to the audit table, and successful writes to the state table.

    Both happen in one transaction, so the state never claims a write the audit lacks.
    """
    if not rows:
        return
    audit = [
        (
            r.contact_id,
            r.user_id,
            r.attribute,
            r.old_value,
            r.new_value,
            r.status,
            r.http_status,
            r.message,
            r.attempted_at,
            run_id,
            dry_run,
        )
        for r in rows
    ]
    written = [
        (r.contact_id, r.attribute, r.new_value, r.attempted_at, run_id)
        for r in rows
        if r.status == OK and not dry_run
    ]
    gone = {
        r.contact_id: (r.contact_id, r.http_status, r.message, r.attempted_at, run_id)
        for r in rows
        if r.status == NOT_FOUND and not dry_run
    }
    con.execute("begin transaction")
    try:
        con.executemany(
            f"insert into {AUDIT_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audit
        )
        if written:
            con.executemany(f"insert or replace into {STATE_TABLE} values (?, ?, ?, ?, ?)", written)
        if gone:
            con.executemany(
                f"insert or replace into {GONE_TABLE} values (?, ?, ?, ?, ?)", list(gone.values())
            )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def run_summary(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Contacts attempted and failed in one run, and audit rows per status.

    A contact counts as one attempt however many attributes it carried; it failed when any
    of its audit rows has a failed status.
    """
    attempted, failed = con.execute(
        f"""select count(distinct contact_id),
            count(distinct contact_id) filter (where status in (select unnest(?::varchar[])))
        from {AUDIT_TABLE} where run_id = ?""",
        [list(FAILED_STATUSES), run_id],
    ).fetchone()
    summary = {"contacts_attempted": attempted, "contacts_failed": failed}
    for status, count in con.execute(
        f"select status, count(*) from {AUDIT_TABLE} where run_id = ? group by status order by 1",
        [run_id],
    ).fetchall():
        summary[f"rows_{status}"] = count
    return summary


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()[0]
    return found > 0
