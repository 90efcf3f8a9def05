"""`nextbest import-events FILE`: load an export of older events into `raw.intercom_events`.

Intercom lists only the last 90 days of a contact's events. An export (CSV, or JSON lines)
fills in the history: each row is keyed like an API event (contact, name, second and the
ordinal among equal ones), so rows the API already gave are recognised and skipped, and a
later API read of an imported event replaces the imported copy. A row that cannot be read goes
to `raw.quarantine` with its line number and reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from orchestration.ingest.load import (
    MILLISECONDS_THRESHOLD,
    EventRow,
    LoadCounts,
    event_key,
    insert_rows,
    now_utc,
    quarantine,
    upsert_events,
    with_ordinals,
)
from orchestration.warehouse import RAW_SCHEMA

log = logging.getLogger(__name__)

# Accepted names of each column, first match wins; `--column` maps any other name.
COLUMN_NAMES = {
    "external_id": ("external_id", "user_id"),
    "contact_id": ("contact_id", "intercom_user_id"),
    "email": ("email",),
    "event_name": ("event_name", "event", "name"),
    "created_at": ("created_at", "timestamp", "time"),
}


class EventImportError(ValueError):
    """The file cannot be imported at all (unreadable, or a required column is missing)."""


@dataclass
class ImportReport:
    """What an import did."""

    rows: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    contacts_matched: int = 0
    keys_unmatched: int = 0
    emails_ambiguous: int = 0
    coverage_extended: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line with the numbers."""
        c = self.counts
        return (
            f"{self.rows:,} rows: {c.inserted:,} events inserted, {c.unchanged:,} already "
            f"stored, {c.duplicates:,} repeated in the file, {c.quarantined:,} quarantined; "
            f"{self.contacts_matched:,} contacts matched, {self.keys_unmatched:,} user ids "
            f"with no contact (kept under the user id), {self.emails_ambiguous:,} emails "
            f"shared by several contacts (not matched), history extended for "
            f"{self.coverage_extended:,} contacts, {self.seconds:.1f} s"
        )


def read_export(path: Path, column_map: dict[str, str] | None = None) -> pd.DataFrame:
    """The export as text columns named as in `COLUMN_NAMES` (CSV, or JSON lines by suffix)."""
    if not path.exists():
        raise EventImportError(f"{path}: no such file")
    suffixes = "".join(path.suffixes).lower()
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        frame = pd.read_json(path, lines=True, dtype=False).astype(object)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).astype(object)
    frame = frame.map(_text)
    frame = frame.rename(columns=dict(column_map or {}))
    chosen: dict[str, str] = {}
    for target, names in COLUMN_NAMES.items():
        for name in names:
            if name in frame.columns:
                chosen[target] = name
                break
    if "event_name" not in chosen or "created_at" not in chosen:
        raise EventImportError(
            f"{path}: needs an event name and a time column (found {list(frame.columns)}); "
            "accepted names: " + json.dumps(COLUMN_NAMES)
        )
    if not {"external_id", "contact_id", "email"} & set(chosen):
        raise EventImportError(f"{path}: needs a user_id, external_id, contact_id or email column")
    out = pd.DataFrame({target: frame[name] for target, name in chosen.items()})
    for target in COLUMN_NAMES:
        if target not in out.columns:
            out[target] = None
    return out


def _text(value: Any) -> str | None:
    # Cells become text or None: empty CSV cells and JSON nulls (NaN once in a frame) alike.
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_time(value: str | None) -> int | None:
    """Unix seconds from Unix seconds, milliseconds or ISO 8601 text (UTC when no zone)."""
    if value is None:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        stamp = pd.to_datetime(text, utc=True, errors="coerce")
        if pd.isna(stamp):
            return None
        # Floor to the second, as Intercom stores events.
        return int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))
    if number >= MILLISECONDS_THRESHOLD:
        number /= 1000
    return int(number // 1)


def import_events(
    con: duckdb.DuckDBPyConnection,
    path: Path | str,
    *,
    column_map: dict[str, str] | None = None,
    sync_id: str | None = None,
) -> ImportReport:
    """Import an export of events into `raw.intercom_events` (source `import`).

    Rows are matched to contacts by `contact_id`, else `external_id` (never by email alone,
    which is not unique: such rows are keyed by the email and reported unmatched). A contact's
    history becomes complete from its earliest imported event when the export reaches the
    span its API reads already cover.
    """
    started = time.monotonic()
    path = Path(path)
    sync_id = sync_id or f"import-{uuid.uuid4().hex[:12]}"
    frame = read_export(path, column_map)
    report = ImportReport(rows=len(frame))
    by_external = dict(
        con.execute(
            f"""
            select payload->>'external_id', arg_min(id, is_deleted::int)
            from {RAW_SCHEMA}.intercom_contacts
            where payload->>'external_id' is not null
            group by 1
            """
        ).fetchall()
    )
    known = {r[0] for r in con.execute(f"select id from {RAW_SCHEMA}.intercom_contacts").fetchall()}
    contacts_by_email = dict(
        con.execute(
            f"""
            select lower(trim(payload->>'email')), count(*)
            from {RAW_SCHEMA}.intercom_contacts
            where not is_deleted and coalesce(payload->>'email', '') != ''
            group by 1
            """
        ).fetchall()
    )
    ambiguous: set[str] = set()
    bad: list[tuple[str | None, str, Any]] = []
    parsed: list[tuple[str, str | None, str | None, str | None, str, int, dict]] = []
    unmatched: set[str] = set()
    records = frame.to_dict("records")
    for line, record in enumerate(records, start=2):
        # pandas may turn None back into NaN in a text column: normalise every cell again.
        record = {key: _text(value) for key, value in record.items()}
        name = (record["event_name"] or "").strip()
        created = parse_time(record["created_at"])
        external = (record["external_id"] or "").strip() or None
        contact = (record["contact_id"] or "").strip() or None
        email = (record["email"] or "").strip() or None
        reason = None
        if not name:
            reason = "empty event name"
        elif created is None:
            reason = f"unreadable time {record['created_at']!r}"
        elif not (contact or external or email):
            reason = "no contact_id, external_id or email"
        if reason:
            bad.append((f"{path.name}:{line}", reason, record))
            continue
        if contact is None and external is not None:
            contact = by_external.get(external)
        if contact is not None and contact not in known:
            contact = None
        key = contact or external or f"email:{email}"
        if contact is None:
            unmatched.add(key)
            # An email alone never picks a contact: it is not unique in Intercom.
            if not external and contacts_by_email.get(email.lower(), 0) > 1:
                ambiguous.add(email.lower())
        payload = {
            "event_name": name,
            "created_at": created,
            "user_id": external,
            "email": email,
            "source_file": path.name,
            "source_line": line,
        }
        parsed.append((key, contact, external, email, name, created, payload))
    ordinals = with_ordinals((key, name, created) for key, _, _, _, name, created, _ in parsed)
    rows = [
        EventRow(
            id=event_key(key, name, created, ordinal),
            intercom_event_id=None,
            contact_id=contact,
            external_id=external,
            email=email,
            event_name=name,
            created_at=created,
            payload=payload,
            source="import",
        )
        for (key, contact, external, email, name, created, payload), ordinal in zip(
            parsed, ordinals, strict=True
        )
    ]
    con.execute("begin transaction")
    try:
        report.counts = upsert_events(con, rows, sync_id)
        report.counts.quarantined = quarantine(con, "import_events", bad, sync_id)
        report.coverage_extended = _extend_coverage(con, rows, sync_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.contacts_matched = len({r.contact_id for r in rows if r.contact_id})
    report.keys_unmatched = len(unmatched)
    report.emails_ambiguous = len(ambiguous)
    if ambiguous:
        log.warning(
            "import-events: %d emails point at several contacts and were not matched: %s",
            len(ambiguous),
            ", ".join(sorted(ambiguous)[:5]),
        )
    report.seconds = time.monotonic() - started
    log.info("import-events %s: %s", path, report.summary())
    return report


def _extend_coverage(con: duckdb.DuckDBPyConnection, rows: list[EventRow], sync_id: str) -> int:
    spans: dict[str, tuple[int, int]] = {}
    for row in rows:
        if row.contact_id is None:
            continue
        low, high = spans.get(row.contact_id, (row.created_at, row.created_at))
        spans[row.contact_id] = (min(low, row.created_at), max(high, row.created_at))
    if not spans:
        return 0
    con.execute("create or replace temp table _spans (contact_id varchar, low bigint, high bigint)")
    insert_rows(
        con,
        "insert into _spans select * from _rows",
        [],
        ("contact_id", "low", "high"),
        [(k, *v) for k, v in spans.items()],
    )
    # The export runs until its newest event: only where that reaches the start of what the
    # API reads cover do the two join up without a gap.
    export_end = max(high for _, high in spans.values())
    changed = con.execute(
        f"""
        update {RAW_SCHEMA}.intercom_event_coverage as v
        set complete_from = s.low, sync_id = ?, loaded_at = ?
        from _spans as s
        where v.contact_id = s.contact_id and s.low < v.complete_from
            and ? >= v.complete_from - 1
        returning 1
        """,
        [sync_id, now_utc(), export_end],
    ).fetchall()
    con.execute("drop table _spans")
    return len(changed)


def run_cli(path: Path, columns: list[str], console: Any) -> int:
    """`nextbest import-events`: import into the warehouse and print the numbers.

    Returns:
        The exit code: 0 on success, 1 when the file cannot be imported.
    """
    from orchestration.settings import get_settings
    from orchestration.warehouse import warehouse

    column_map: dict[str, str] = {}
    for spec in columns:
        theirs, sep, ours = spec.partition("=")
        if not sep or ours not in COLUMN_NAMES:
            console.print(
                f"[red]--column {spec!r}[/red]: write FILE_COLUMN=NAME, NAME one of "
                + ", ".join(COLUMN_NAMES)
            )
            return 1
        column_map[theirs] = ours
    settings = get_settings()
    try:
        with warehouse(settings.warehouse) as con:
            report = import_events(con, path, column_map=column_map)
            total = con.execute(f"select count(*) from {RAW_SCHEMA}.intercom_events").fetchone()[0]
    except EventImportError as error:
        console.print(f"[red]{error}[/red]")
        return 1
    console.print(f"import-events {path}: {report.summary()}")
    console.print(f"raw.intercom_events now holds {total:,} events ({settings.warehouse})")
    return 0
