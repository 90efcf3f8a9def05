"""Write a sandbox store straight into the warehouse's raw layer, as a full sync would.

For benchmarks and tests of the later stages at sizes where going through HTTP would only
measure HTTP: the rows are those the ingestion writes after a first full sync (same columns,
payloads as the API answers them, events with the stable id of docs/warehouse.md, coverage
from the start of the event window or the sign-up when later). Events are built in DuckDB
from numpy columns, so 5,000,000 of them load in seconds.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd

from orchestration.warehouse import RAW_SCHEMA, ensure_raw_tables
from sandbox.store import Store

log = logging.getLogger(__name__)

_STRIPE_TABLES = {
    "customers": "stripe_customers",
    "subscriptions": "stripe_subscriptions",
    "invoices": "stripe_invoices",
    "charges": "stripe_charges",
    "refunds": "stripe_refunds",
}


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    # DuckDB 2 keeps a result open until it is fetched; fetching frees the connection.
    return con.execute(sql, params or []).fetchall()


def _load_objects(
    con: duckdb.DuckDBPyConnection, table: str, rows: pd.DataFrame, sync_id: str, loaded: datetime
) -> int:
    if rows.empty:
        return 0
    rows = rows.assign(sync_id=sync_id, loaded_at=loaded)
    con.register("_sandbox_rows", rows)
    try:
        _run(
            con,
            f"""insert or replace into {RAW_SCHEMA}.{table}
            (id, updated_at, payload, is_deleted, deleted_reason, sync_id, loaded_at)
            select id, updated_at, payload::json, is_deleted, deleted_reason, sync_id, loaded_at
            from _sandbox_rows""",
        )
    finally:
        con.unregister("_sandbox_rows")
    return len(rows)


def write_raw(
    store: Store, con: duckdb.DuckDBPyConnection, *, sync_id: str | None = None
) -> dict[str, int]:
    """Write every object the store's APIs would list into the raw tables.

    Args:
        store: The sandbox store.
        con: An open warehouse connection; the raw tables are created when missing.
        sync_id: The sync id written on every row; default a fresh one.

    Returns:
        Rows written per table.
    """
    started = time.perf_counter()
    ensure_raw_tables(con)
    sync_id = sync_id or f"sandbox-{uuid.uuid4().hex[:12]}"
    loaded = datetime.now(UTC)
    counts: dict[str, int] = {}
    with store.lock:
        c = store.contacts
        live = np.flatnonzero(c.live)
        contacts = pd.DataFrame(
            {
                "id": [c.ids[i] for i in live],
                "updated_at": c.updated_at[live].astype(np.int64),
                "payload": [json.dumps(store.render_contact(int(i))) for i in live],
                "is_deleted": False,
                "deleted_reason": None,
            }
        )
        counts["intercom_contacts"] = _load_objects(
            con, "intercom_contacts", contacts, sync_id, loaded
        )
        companies = pd.DataFrame(
            {
                "id": [co["id"] for co in store.companies],
                "updated_at": [co["updated_at"] for co in store.companies],
                "payload": [json.dumps(co) for co in store.companies],
                "is_deleted": False,
                "deleted_reason": None,
            }
        )
        counts["intercom_companies"] = _load_objects(
            con, "intercom_companies", companies, sync_id, loaded
        )
        links = pd.DataFrame(
            {
                "contact_id": [c.ids[i] for i in live if c.company[i] >= 0],
                "company_id": [
                    store.companies[int(c.company[i])]["id"] for i in live if c.company[i] >= 0
                ],
            }
        )
        if not links.empty:
            payloads = {co["id"]: json.dumps(co) for co in store.companies}
            links["payload"] = links["company_id"].map(payloads)
            links = links.assign(sync_id=sync_id, loaded_at=loaded)
            con.register("_sandbox_links", links)
            _run(
                con,
                f"""insert or replace into {RAW_SCHEMA}.intercom_contact_companies
                select contact_id, company_id, payload::json, sync_id, loaded_at
                from _sandbox_links""",
            )
            con.unregister("_sandbox_links")
        counts["intercom_contact_companies"] = len(links)
        for kind, table in _STRIPE_TABLES.items():
            objects = store.stripe[kind].objects
            deleted = [kind == "customers" and o["id"] in store.deleted_customers for o in objects]
            rows = pd.DataFrame(
                {
                    "id": [o["id"] for o in objects],
                    "updated_at": [o["created"] for o in objects],
                    "payload": [json.dumps(store.stripe_render(kind, o)) for o in objects],
                    "is_deleted": deleted,
                    "deleted_reason": ["deleted" if d else None for d in deleted],
                }
            )
            counts[table] = _load_objects(con, table, rows, sync_id, loaded)
        counts["intercom_events"] = _write_events(store, con, live, sync_id, loaded)
        counts["intercom_event_coverage"] = _write_coverage(store, con, live, sync_id, loaded)
    log.info(
        "wrote the sandbox into the raw layer in %.1f s: %s",
        time.perf_counter() - started,
        ", ".join(f"{k} {v:,}" for k, v in counts.items()),
    )
    return counts


def _write_events(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    live: np.ndarray,
    sync_id: str,
    loaded: datetime,
) -> int:
    """The events the API serves for the live contacts, de-duplicated like Intercom."""
    c, e = store.contacts, store.events
    # A merged lead's events are served on the user it was merged into.
    owner = np.arange(len(c), dtype=np.int64)
    for lead, target in store.merged_into.items():
        owner[lead] = target
    position = owner[e.contact]
    keep = c.live[position]
    start = store.window_start()
    if start is not None:
        keep &= e.created_at >= start
    k = np.flatnonzero(keep)
    ids = np.asarray(c.ids, dtype=object)
    externals = np.asarray(c.external_ids, dtype=object)
    emails = np.asarray([em or "" for em in c.emails], dtype=object)
    names = np.asarray(e.names, dtype=object)
    frame = pd.DataFrame(
        {
            "k": k,
            "contact_id": ids[position[k]],
            "external_id": externals[position[k]],
            "email": emails[position[k]],
            "event_name": names[e.name[k]],
            "created_at": e.created_at[k],
            "metadata": "{}",
        }
    )
    extra = [
        (c.ids[i], c.external_ids[i], c.emails[i] or "", name, created, json.dumps(meta), eid)
        for i, rows in store.extra_events.items()
        if c.live[i]
        for name, created, meta, eid in rows
        if start is None or created >= start
    ]
    con.register("_sandbox_events", frame)
    extra_frame = pd.DataFrame(
        extra,
        columns=[
            "contact_id",
            "external_id",
            "email",
            "event_name",
            "created_at",
            "metadata",
            "event_id",
        ],
    )
    con.register("_sandbox_extra_events", extra_frame)
    try:
        _run(
            con,
            f"""insert or replace into {RAW_SCHEMA}.intercom_events
            with events as (
                select lpad(format('{{:x}}', k), 24, '0') as event_id, contact_id, external_id,
                    email, event_name, created_at::bigint as created_at, metadata, k::double as o
                from _sandbox_events
                union all
                select event_id, contact_id, external_id, email, event_name,
                    created_at::bigint, metadata, 1e18 + row_number() over () as o
                from _sandbox_extra_events
            ),
            keyed as (
                select *, md5(contact_id || '|' || event_name || '|' || created_at::varchar) as id
                from events
                qualify row_number() over (partition by id order by o) = 1
            )
            select id, event_id, contact_id, external_id, email, event_name, created_at,
                json_object(
                    'type', 'event', 'id', event_id, 'event_name', event_name,
                    'created_at', created_at, 'user_id', external_id,
                    'intercom_user_id', contact_id, 'email', email, 'metadata', metadata::json
                ),
                'api', ?, ?
            from keyed""",
            [sync_id, loaded],
        )
    finally:
        con.unregister("_sandbox_events")
        con.unregister("_sandbox_extra_events")
    return int(
        _run(
            con, f"select count(*) from {RAW_SCHEMA}.intercom_events where sync_id = ?", [sync_id]
        )[0][0]
    )


def _write_coverage(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    live: np.ndarray,
    sync_id: str,
    loaded: datetime,
) -> int:
    """From when each live contact's events are complete: window start or sign-up, the later."""
    c = store.contacts
    signed = np.where(c.signed_up_at[live] >= 0, c.signed_up_at[live], c.created_at[live])
    start = store.window_start()
    complete_from = signed if start is None else np.maximum(signed, start)
    frame = pd.DataFrame(
        {
            "contact_id": [c.ids[i] for i in live],
            "external_id": [c.external_ids[i] for i in live],
            "complete_from": complete_from.astype(np.int64),
            "last_read_at": store.now(),
            "contact_updated_at": c.updated_at[live].astype(np.int64),
            "sync_id": sync_id,
            "loaded_at": loaded,
        }
    )
    con.register("_sandbox_coverage", frame)
    try:
        _run(
            con,
            f"""insert or replace into {RAW_SCHEMA}.intercom_event_coverage
            select contact_id, external_id, complete_from, last_read_at, contact_updated_at,
                sync_id, loaded_at
            from _sandbox_coverage""",
        )
    finally:
        con.unregister("_sandbox_coverage")
    return len(frame)
