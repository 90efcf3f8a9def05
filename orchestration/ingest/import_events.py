"""`nextbest import-events FILE`: load an export of older events into `raw.intercom_events`.

Intercom lists only the last 90 days of a contact's events. An export (CSV, or JSON lines)
fills in the history: each row is keyed like an API event (contact, name, second and the
ordinal among equal ones), so rows the API already gave are recognised and skipped, and a
later API read of an imported event replaces the imported copy. A row that cannot be read goes
to `raw.quarantine` with its line number and reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from orchestration.ingest.load import (
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
    rekeyed: int = 0
    emails_rekeyed: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line with the numbers.

        The rows are the events inserted, those already stored and those quarantined: a row
        repeating an earlier one's contact, name and second is a further event of that
        second (numbered by its ordinal), never dropped as a copy.
        """
        c = self.counts
        return (
            f"{self.rows:,} rows: {c.inserted:,} events inserted, {c.unchanged:,} already "
            f"stored, {c.quarantined:,} quarantined; "
            f"{self.rekeyed:,} copies imported before their contact was synced moved to it, "
            f"{self.emails_rekeyed:,} stored under an e-mail in other case moved to its "
            f"lower-case key; "
            f"{self.contacts_matched:,} contacts matched, {self.keys_unmatched:,} users "
            "matched to no contact (kept under the user id, contact id or e-mail given), "
            f"{self.emails_ambiguous:,} emails "
            f"shared by several contacts (not matched), history extended for "
            f"{self.coverage_extended:,} contacts, {self.seconds:.1f} s"
        )


# Times outside this span are taken for mistakes (a unit slip, a sign, a placeholder).
EARLIEST = 946_684_800  # 2000-01-01T00:00:00Z
LATEST = 4_102_444_800  # 2100-01-01T00:00:00Z
# Unix numbers are read as seconds, milliseconds, microseconds or nanoseconds: the one unit
# that puts them inside the span above (the spans of the four units do not overlap).
UNITS = ((1, "s"), (10**3, "ms"), (10**6, "us"), (10**9, "ns"))
# Orders of magnitude (Decimal.adjusted) a number can have and fall in the span in one unit.
MAGNITUDES = (len(str(EARLIEST)) - 1, len(str(LATEST * UNITS[-1][0])) - 1)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NOT_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)
# Day and month in either order (01/05/2024, 5.1.24): not ISO 8601, and no way to tell which.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(\D|$)")
_LOCAL_DATE = re.compile(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}(\D.*)?")
_LINE_END = re.compile(r"\r\n?|\n")
# Control characters other than tab and line breaks mark a corrupt cell.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# Files that are no UTF-8 text by their first bytes, named so the fix is plain.
_NOT_TEXT = (
    (b"\x1f\x8b", "is gzip-compressed; decompress it first (gunzip)"),
    (b"PK\x03\x04", "is a ZIP archive (an .xlsx workbook?); export the events as CSV"),
    (b"\xff\xfe", "is UTF-16 text (byte-order mark FF FE); save the export as UTF-8"),
    (b"\xfe\xff", "is UTF-16 text (byte-order mark FE FF); save the export as UTF-8"),
)


@dataclass
class Record:
    """One row of the export: its line, its cells (or None) and why it cannot be read."""

    line: int
    cells: dict[str, Any] | None
    reason: str | None = None
    raw: Any = None


def read_export(path: Path, column_map: dict[str, str] | None = None) -> pd.DataFrame:
    """The readable rows of the export as text columns named as in `COLUMN_NAMES`."""
    records = [r for r in read_records(path, column_map) if r.reason is None]
    columns = list(COLUMN_NAMES)
    return pd.DataFrame([r.cells for r in records], columns=columns, dtype=object)


def read_records(path: Path, column_map: dict[str, str] | None = None) -> list[Record]:
    """Every row of the export (CSV, or JSON lines by suffix) with its line number.

    Cells are text or None under the names of `COLUMN_NAMES`; a row that cannot be read
    carries the reason instead.

    Raises:
        EventImportError: The file as a whole cannot be read (missing, a directory, empty,
            not UTF-8) or lacks a required column.
    """
    text = _read_text(path)
    suffixes = "".join(path.suffixes).lower()
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        header, records = _json_lines(path, text)
    else:
        header, records = _csv_rows(path, text)
    for theirs, ours in (column_map or {}).items():
        if theirs not in header:
            # A typo must not leave the import to the default names of another column.
            raise EventImportError(
                f"{path}: --column {theirs}={ours}: the file has no column {theirs!r} "
                f"(found {header})"
            )
    given, header = header, [dict(column_map or {}).get(name, name) for name in header]
    for name in dict.fromkeys(header):
        sources = [theirs for theirs, ours in zip(given, header, strict=True) if ours == name]
        if len(sources) > 1:
            # Two columns under one name: which holds the value cannot be guessed.
            raise EventImportError(
                f"{path}: columns {sources} would all be read as {name!r}; "
                "map only one of them with --column"
            )
    chosen: dict[str, str] = {}
    for target, names in COLUMN_NAMES.items():
        for name in names:
            if name in header:
                chosen[target] = name
                break
    if "event_name" not in chosen or "created_at" not in chosen:
        raise EventImportError(
            f"{path}: needs an event name and a time column (found {header}); "
            "accepted names: " + json.dumps(COLUMN_NAMES) + "; map a column of another name "
            "with --column FILE_COLUMN=event_name or FILE_COLUMN=created_at"
        )
    if not {"external_id", "contact_id", "email"} & set(chosen):
        raise EventImportError(
            f"{path}: needs a user_id, external_id, contact_id or email column (found {header});"
            " map a column of another name with --column FILE_COLUMN=external_id"
        )
    renames = dict(column_map or {})
    for record in records:
        if record.cells is None:
            continue
        cells = {renames.get(k, k): v for k, v in record.cells.items()}
        out = {
            target: cells.get(chosen[target]) if target in chosen else None
            for target in COLUMN_NAMES
        }
        record.reason = _cell_problem(out, chosen)
        if record.reason is None:
            record.cells = {k: _text(v) for k, v in out.items()}
        else:
            # Kept aside exactly as the file gave it.
            record.raw, record.cells = record.cells, None
    return records


def _read_text(path: Path) -> str:
    if not path.exists():
        raise EventImportError(f"{path}: no such file")
    if path.is_dir():
        raise EventImportError(f"{path}: is a directory, not an export file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EventImportError(f"{path}: cannot be read ({error.strerror})") from error
    for magic, what in _NOT_TEXT:
        if data.startswith(magic):
            raise EventImportError(f"{path}: {what}")
    try:
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of a name.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise EventImportError(
            f"{path}: line {line} is not UTF-8 (byte {data[error.start]:#04x} at offset "
            f"{error.start}); save the export as UTF-8"
        ) from error
    if not text.strip():
        raise EventImportError(f"{path}: the file is empty")
    return text


def _csv_rows(path: Path, text: str) -> tuple[list[str], list[Record]]:
    # The csv module refuses fields over 131,072 characters and, after that, every row
    # that follows; JSON lines read such a value, so CSV does too (no field outgrows the file).
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[Record] = []
    header: list[str] | None = None
    previous = 0
    while True:
        start = previous + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            # A broken quote swallows the rest of the file: keep it aside as one record.
            # Lines as the reader counts them (\n, \r or \r\n), not str.splitlines().
            rest = "".join(list(io.StringIO(text, newline=""))[start - 1 :])
            reason = f"unreadable CSV from here on: {error}"
            records.append(Record(start, None, reason, {"text": rest}))
            break
        previous = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            # A blank line, empty or of white space only (as in JSON lines), is no row.
            continue
        if header is None:
            header = [name.strip() for name in fields]
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                # Which of two same-named columns holds the value cannot be guessed.
                raise EventImportError(f"{path}: column names repeated in the header: {repeated}")
            continue
        if len(fields) != len(header):
            reason = f"expected {len(header)} fields, found {len(fields)}"
            records.append(Record(start, None, reason, {"fields": fields}))
            continue
        records.append(Record(start, dict(zip(header, fields, strict=True))))
    if header is None:
        raise EventImportError(f"{path}: the file has no header line")
    return header, records


class _JsonObject(dict):
    """A decoded JSON object that remembers the keys its text gave more than once."""

    repeated: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    # json.loads keeps the last of two equal keys silently; a CSV header repeating a name is
    # refused, so a JSON line repeating a key is set aside.
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        obj.repeated = tuple(key for key, count in counts.items() if count > 1)
    return obj


def _json_lines(path: Path, text: str) -> tuple[list[str], list[Record]]:
    records: list[Record] = []
    header: dict[str, None] = {}
    # Only \n, \r\n or \r end a JSON line (neither may stand unescaped in a JSON string):
    # str.splitlines() would also cut at U+2028, U+0085 and others that JSON strings may hold.
    for line, raw in enumerate(_LINE_END.split(text), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, object_pairs_hook=_json_object)
        except json.JSONDecodeError as error:
            reason = f"not valid JSON: {error.msg} (column {error.colno})"
            records.append(Record(line, None, reason, {"line": raw}))
            continue
        except (ValueError, RecursionError) as error:
            # Valid JSON that Python refuses to build: an integer of more than 4,300 digits,
            # arrays or objects nested about a thousand deep.
            reason = f"JSON too large to read: {error}"
            records.append(Record(line, None, reason, {"line": raw}))
            continue
        if not isinstance(value, dict):
            reason = f"expected a JSON object, found {type(value).__name__}"
            records.append(Record(line, None, reason, {"line": raw}))
            continue
        if value.repeated:
            # Only the line's own keys: a nested object (metadata) is not read.
            names = " and ".join(repr(k) for k in value.repeated)
            reason = f"key {names} appears more than once; which value holds is unknown"
            records.append(Record(line, None, reason, {"line": raw}))
            continue
        header.update(dict.fromkeys(value))
        records.append(Record(line, value))
    if not header:
        raise EventImportError(f"{path}: no line is a JSON object")
    return list(header), records


def _cell_problem(cells: dict[str, Any], chosen: dict[str, str]) -> str | None:
    for target, value in cells.items():
        name = chosen.get(target, target)
        if isinstance(value, bool) or not (value is None or isinstance(value, (str, int, float))):
            kinds = ((bool, "true/false"), (dict, "an object"), (list, "an array"))
            kind = next((text for cls, text in kinds if isinstance(value, cls)), None)
            return f"{name} is {kind or type(value).__name__}, expected text or a number"
        if isinstance(value, str) and _CONTROL.search(value):
            what = "a NUL byte" if "\x00" in value else "a control character"
            return f"{name} holds {what}"
    return None


def _text(value: Any) -> str | None:
    # Cells become text or None: empty CSV cells and JSON nulls alike.
    if value is None or value == "":
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def read_time(value: str | None) -> tuple[int | None, str | None]:
    """Unix seconds from a Unix number (s, ms, us or ns) or ISO 8601 text (UTC when no zone).

    Returns:
        The second (floored, as Intercom stores events) and None, or None and the reason.
    """
    if value is None or not value.strip():
        return None, "no time"
    text = value.strip()
    if _NOT_FINITE.fullmatch(text):
        return None, f"time {value!r} is not a finite number"
    if _NUMBER.fullmatch(text):
        number = Decimal(text)
        # Every accepted number has 9 to 19 digits before the point (seconds from 9.5e8,
        # nanoseconds below 4.2e18); `1e999999` would take minutes to turn into an integer,
        # `1e999999999` overflows the decimal context.
        if number and not MAGNITUDES[0] <= number.adjusted() <= MAGNITUDES[1]:
            return None, _implausible(value)
        for scale, _unit in UNITS:
            seconds = int((number / scale).to_integral_value(rounding=ROUND_FLOOR))
            if EARLIEST <= seconds < LATEST:
                return seconds, None
        return None, _implausible(value)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as error:
        if _ISO_DATE.match(text):
            # Written as ISO 8601, but no such day or hour: say which part is wrong.
            return None, f"unreadable time {value!r}: {error}"
        if _LOCAL_DATE.fullmatch(text):
            return None, f"ambiguous time {value!r}: write ISO 8601 (2024-05-01) or Unix seconds"
        return None, f"unreadable time {value!r}"
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    seconds = math.floor(stamp.timestamp())
    if not EARLIEST <= seconds < LATEST:
        return None, f"implausible time {value!r}: not within 2000-01-01..2100-01-01"
    return seconds, None


def _implausible(value: str) -> str:
    return (
        f"implausible time {value!r}: not within 2000-01-01..2100-01-01 as Unix "
        "seconds, milliseconds, microseconds or nanoseconds"
    )


def parse_time(value: str | None) -> int | None:
    """Unix seconds from a Unix number or ISO 8601 text, or None when it cannot be read."""
    return read_time(value)[0]


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
    records = read_records(path, column_map)
    report = ImportReport(rows=len(records))
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
    former: list[set[str]] = []
    # The key of each row while its contact is not synced, e-mail lower-cased and as written
    # (versions before e-mail keys were lower-cased): an earlier import used one of them.
    unsynced: list[tuple[str, str]] = []
    unmatched: set[str] = set()
    for item in records:
        where = f"{path.name}:{item.line}"
        if item.cells is None:
            bad.append((where, item.reason, item.raw))
            continue
        record = item.cells
        name = (record["event_name"] or "").strip()
        created, time_problem = read_time(record["created_at"])
        external = (record["external_id"] or "").strip() or None
        contact = (record["contact_id"] or "").strip() or None
        email = (record["email"] or "").strip() or None
        reason = None
        if not name:
            reason = "empty event name"
        elif time_problem is not None:
            reason = time_problem
        elif not (contact or external or email):
            reason = "no contact_id, external_id or email"
        if reason:
            bad.append((where, reason, record))
            continue
        given_contact = contact
        if contact is not None and contact not in known:
            contact = None
        if contact is None and external is not None:
            contact = by_external.get(external)
        # Intercom compares e-mails without regard to case: `Lee@x.com` and `lee@x.com`
        # key one event. The `email` column and the payload keep it as written.
        email_key = f"email:{email.lower()}" if email else None
        written_key = f"email:{email}" if email else None
        # A contact id not synced yet still keys the row as the API will key that contact's
        # event, so a later read of the same event replaces this copy.
        key = contact or given_contact or external or email_key
        if contact is None:
            unmatched.add(key)
            # An email alone never picks a contact: it is not unique in Intercom.
            if key == email_key and contacts_by_email.get(email.lower(), 0) > 1:
                ambiguous.add(email.lower())
        payload = {
            "event_name": name,
            "created_at": created,
            "user_id": external,
            "email": email,
            "source_file": path.name,
            "source_line": item.line,
        }
        # The keys an earlier import may have stored this event under, before its contact
        # was synced (or, for a contact id not synced yet, before such an id keyed its row):
        # once the contact's key is known, that copy moves to it.
        earlier = {given_contact, external, email_key, written_key} - {key, None}
        parsed.append((key, contact, external, email, name, created, payload))
        former.append(earlier if key in (contact, given_contact) else set())
        unsynced.append(
            (given_contact or external or email_key, given_contact or external or written_key)
        )
    ordinals = with_ordinals((key, name, created) for key, _, _, _, name, created, _ in parsed)
    moved = [
        event_key(old_key, name, created, ordinal)
        for (_, _, _, _, name, created, _), keys, ordinal in zip(
            parsed, former, ordinals, strict=True
        )
        for old_key in sorted(keys)
    ]
    # The exact ids an earlier import gave: the ordinals counted among the rows keyed alike
    # then, which differ from today's where today's key joins rows that were apart.
    recased: list[str] = []
    for scheme in (0, 1):
        keys = [
            (old[scheme], name, created)
            for old, (*_, name, created, _) in zip(unsynced, parsed, strict=True)
        ]
        for (old_key, name, created), entry, ordinal in zip(
            keys, parsed, with_ordinals(keys), strict=True
        ):
            # A row with no contact is keyed as then but for the e-mail's case, if at all.
            by_case = entry[1] is None and old_key != entry[0]
            (recased if by_case else moved).append(event_key(old_key, name, created, ordinal))
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
    current = {row.id for row in rows}
    stale_moved = sorted(set(moved) - current)
    stale_recased = sorted(set(recased) - current - set(moved))
    con.execute("begin transaction")
    try:
        # Only imported copies move; what the API stored is left as it is.
        report.rekeyed = _delete_imported(con, stale_moved)
        report.emails_rekeyed = _delete_imported(con, stale_recased)
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


def _delete_imported(con: duckdb.DuckDBPyConnection, ids: list[str]) -> int:
    """Delete the imported events of these ids; returns how many there were."""
    if not ids:
        return 0
    deleted = con.execute(
        f"delete from {RAW_SCHEMA}.intercom_events"
        " where source = 'import' and id in (select unnest(?::varchar[]))"
        " returning 1",
        [ids],
    ).fetchall()
    return len(deleted)


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
    from rich.markup import escape

    from orchestration.settings import get_settings
    from orchestration.warehouse import warehouse

    column_map: dict[str, str] = {}
    for spec in columns:
        theirs, sep, ours = spec.partition("=")
        if not sep or ours not in COLUMN_NAMES:
            console.print(
                f"[red]--column {escape(repr(spec))}[/red]: write FILE_COLUMN=NAME, NAME one of "
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
        # Paths and the file's column names are printed as given, never read as rich markup.
        console.print(f"[red]{escape(str(error))}[/red]")
        return 1
    console.print(f"import-events {escape(str(path))}: {report.summary()}")
    console.print(
        f"raw.intercom_events now holds {total:,} events ({escape(str(settings.warehouse))})"
    )
    return 0
