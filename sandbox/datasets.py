"""Event logs the sandbox serves: downloaded, shipped with the project, or brought by a user.

Every loader returns the same frame: `user_id` (string), `event` (string) and `timestamp`
(Unix seconds, int64), sorted by user and time, plus the name of the conversion event.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"

SIMPLE_SHOP_WHEEL = "retentioneering-3.3.0-py3-none-any.whl"
SIMPLE_SHOP_WHEEL_SHA256 = "c150f67d9a816718b2be0ffd55a9661be1f96f7174f6793081aa4cbe648c95e8"
SIMPLE_SHOP_MEMBER = "retentioneering/datasets/data/simple-onlineshop.csv"
SIMPLE_SHOP_CSV_SHA256 = "3b7f78721020612367176a1f6464e4802485204e4518ecab5c936a3375ad3ec6"
# PyPI's simple index (PEP 691 JSON) names the wheel's download URL and hash.
PYPI_SIMPLE_URL = "https://pypi.org/simple/retentioneering/"
REQUIRED_COLUMNS = ("user_id", "event", "timestamp")
# 2100-01-01: later times in an event export are typing errors or a wrong unit.
LATEST_TIME = 4_102_444_800
# Control characters, and the lone surrogates that stand for bytes that are not UTF-8.
_UNREADABLE = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the file and the reason."""


@dataclass(frozen=True)
class RejectedRow:
    """A row of an events file that was set aside: its first line, the reason, its text."""

    line: int
    reason: str
    record: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.record}"


@dataclass(frozen=True)
class EventLog:
    """An event log ready to be mapped onto Intercom and Stripe.

    Attributes:
        name: The dataset's name.
        events: Frame of `user_id`, `event`, `timestamp` (Unix seconds), sorted by user, time.
        conversion_event: The event that counts as the first payment.
        rejected: Rows of a user's file that could not be read, with line and reason.
        duplicate_rows: Rows that repeat another row's user, event and second (all served).
    """

    name: str
    events: pd.DataFrame
    conversion_event: str
    rejected: tuple[RejectedRow, ...] = ()
    duplicate_rows: int = 0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _has_request(error: Exception) -> bool:
    try:
        return error.request is not None  # type: ignore[attr-defined]
    except RuntimeError:  # httpx raises it when the error was made without a request
        return False


def simple_shop_path(cache_dir: Path) -> Path:
    """Where the simple_shop CSV is cached (it may not be there yet)."""
    return Path(cache_dir) / "simple_shop" / "simple-onlineshop.csv"


def simple_shop_csv(cache_dir: Path) -> Path:
    """Return the cached simple_shop CSV, downloading and verifying it on first use.

    The CSV sits inside the `retentioneering==3.3.0` wheel on PyPI; its licence restricts
    redistribution, so it is fetched at first use and never committed. Both the wheel and the
    CSV are checked against their published sha256.

    Args:
        cache_dir: The dataset cache folder; the CSV goes to `<cache_dir>/simple_shop/`.

    Returns:
        Path of the verified CSV.
    """
    target = simple_shop_path(cache_dir)
    if target.exists() and _sha256(target.read_bytes()) == SIMPLE_SHOP_CSV_SHA256:
        return target
    import httpx

    try:
        with httpx.Client(timeout=120, follow_redirects=True) as client:
            index = client.get(
                PYPI_SIMPLE_URL, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            index.raise_for_status()
            files = [f for f in index.json()["files"] if f["filename"] == SIMPLE_SHOP_WHEEL]
            if not files:
                raise DatasetError(f"{SIMPLE_SHOP_WHEEL} is not listed on {PYPI_SIMPLE_URL}")
            log.info("downloading %s", files[0]["url"])
            wheel = client.get(files[0]["url"])
            wheel.raise_for_status()
    except httpx.HTTPError as error:
        # Offline, behind a proxy, or PyPI down: say what was fetched and where it would go.
        raise DatasetError(
            f"simple_shop could not be downloaded ({type(error).__name__}: {error}) from "
            f"{error.request.url if _has_request(error) else PYPI_SIMPLE_URL}; the first run "
            f"needs PyPI, later ones read {target}"
        ) from error
    if _sha256(wheel.content) != SIMPLE_SHOP_WHEEL_SHA256:
        raise DatasetError(f"{SIMPLE_SHOP_WHEEL}: sha256 differs from the published value")
    with zipfile.ZipFile(io.BytesIO(wheel.content)) as archive:
        data = archive.read(SIMPLE_SHOP_MEMBER)
    if _sha256(data) != SIMPLE_SHOP_CSV_SHA256:
        raise DatasetError(f"{SIMPLE_SHOP_MEMBER}: sha256 differs from the published value")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    log.info("cached simple_shop: %s (%d bytes)", target, len(data))
    return target


def _unix_seconds(stamps: pd.Series) -> pd.Series:
    # pandas 3 may hold microseconds or nanoseconds; dividing by a Timedelta is unit-proof.
    return (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _finish(
    name: str,
    frame: pd.DataFrame,
    conversion_event: str,
    rejected: tuple[RejectedRow, ...] = (),
    duplicate_rows: int = 0,
) -> EventLog:
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    return EventLog(
        name=name,
        events=frame,
        conversion_event=conversion_event,
        rejected=rejected,
        duplicate_rows=duplicate_rows,
    )


def load_simple_shop(cache_dir: Path) -> EventLog:
    """The simple_shop clickstream: 32,283 events of 3,751 users; `payment_done` converts."""
    raw = pd.read_csv(simple_shop_csv(cache_dir))
    stamps = pd.to_datetime(raw["timestamp"], utc=True)
    frame = pd.DataFrame(
        {
            "user_id": raw["user_id"].astype("string").astype(object),
            "event": raw["event"].astype(object),
            "timestamp": _unix_seconds(stamps),
        }
    )
    return _finish("simple_shop", frame, "payment_done")


def load_mobile_onboarding() -> EventLog:
    """The mobile onboarding funnel of 2018: 30,943 events of 4,139 users; `passed` converts."""
    raw = pd.read_csv(DATASETS_DIR / "mobile_onboarding_2018" / "events.csv.gz")
    frame = pd.DataFrame(
        {
            "user_id": raw["user_pseudo_id"].astype(object),
            "event": raw["event_name"].astype(object),
            "timestamp": raw["event_timestamp"].astype("int64") // 10**9,
        }
    )
    return _finish("mobile_onboarding_2018", frame, "passed")


def load_events_file(
    path: Path | str,
    conversion_event: str,
    column_map: Mapping[str, str] | None = None,
) -> EventLog:
    """A user's own event export: a CSV with user id, event name and timestamp columns.

    Rows that cannot be read are set aside in `EventLog.rejected` with their line and reason
    (wrong number of fields, an empty or unprintable user id or event name, text that is not
    UTF-8, an unreadable or out-of-range time); the rest are served. Problems with the file as
    a whole are fatal.

    Args:
        path: The CSV file (UTF-8, a byte-order mark is allowed).
        conversion_event: The event that counts as converting (e.g. a first payment).
        column_map: Maps the file's column names onto `user_id`, `event`, `timestamp`,
            e.g. `{"distinct_id": "user_id", "name": "event", "time": "timestamp"}`.

    Returns:
        The log. Timestamps may be ISO 8601 text (UTC when no offset is given) or Unix
        seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude; each
        row is read on its own, so the forms may be mixed.

    Raises:
        DatasetError: The file is missing, a folder, empty or has no header; a column is
            missing or named twice; the quoting breaks (the message names the line); no row
            is readable; or the conversion event never occurs.
    """
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if not data.strip():
        raise DatasetError(f"{path}: the file is empty; expected a header and event rows")
    # Undecodable bytes become lone surrogates, so each row is judged on its own text.
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns, names_in_file = _header(path, reader, column_map)
    wanted = [columns.index(name) for name in ("user_id", "event", "timestamp")]
    # Reasons name each column as the file does (`time`, not `timestamp`, after a mapping).
    labels = [names_in_file[k] for k in wanted]
    u, e, t = wanted
    width = len(columns)
    clean = not _UNREADABLE.search(text.replace("\r", "").replace("\n", ""))
    users: list[str] = []
    names: list[str] = []
    stamps: list[str] = []
    lines: list[int] = []
    rejected: list[RejectedRow] = []
    line = reader.line_num
    try:
        for record in reader:
            first_line, line = line + 1, reader.line_num
            if not record:
                continue  # a blank line is no record
            if len(record) == width:
                user, event, stamp = record[u].strip(), record[e].strip(), record[t].strip()
                # Rows span lines only inside quotes: a file free of other unreadable
                # characters needs the full check only where a line breaks inside a field.
                if user and event and stamp and (clean and line == first_line):
                    users.append(user)
                    names.append(event)
                    stamps.append(stamp)
                    lines.append(first_line)
                    continue
            reason = _row_problem(record, width, wanted, labels)
            if reason:
                rejected.append(RejectedRow(first_line, reason, _shown(record)))
                continue
            user, event, stamp = (record[k].strip() for k in wanted)
            users.append(user)
            names.append(event)
            stamps.append(stamp)
            lines.append(first_line)
    except csv.Error as error:
        # Past a broken quote the rest of the file cannot be split into rows reliably.
        raise DatasetError(
            f"{path}: line {line + 1}: {error}; check the quoting of the row starting there"
        ) from error
    seconds, bad_times = _parse_times(stamps, labels[2])
    bad = np.flatnonzero(bad_times)
    # Shown as the file has them, every field in its order: read again, only these lines.
    records = _records_at(text, {lines[k] for k in bad}) if len(bad) else {}
    for k in bad:
        rejected.append(RejectedRow(lines[k], bad_times[k], _shown(records[lines[k]])))
    keep = ~bad_times.astype(bool)
    rejected.sort(key=lambda r: r.line)
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(users, dtype=object)[keep].to_numpy(dtype=object),
            "event": pd.Series(names, dtype=object)[keep].to_numpy(dtype=object),
            "timestamp": seconds[keep],
        }
    )
    if frame.empty:
        detail = f"; {len(rejected):,} set aside, the first: {rejected[0]}" if rejected else ""
        raise DatasetError(f"{path}: no readable event rows{detail}")
    if rejected:
        # INFO, not WARNING: callers report EventLog.rejected themselves (`nextbest sandbox
        # serve` lists them, GET /_sandbox/rejected serves them), so a warning here would
        # print every set-aside row a second time.
        log.info(
            "%s: %d of %d rows set aside (first: %s)",
            path,
            len(rejected),
            len(rejected) + len(frame),
            rejected[0],
        )
    if not (frame["event"] == conversion_event).any():
        raise DatasetError(_never_occurs(path, frame["event"], conversion_event, rejected))
    duplicates = int(frame.duplicated().sum())
    return _finish(path.stem, frame, conversion_event, tuple(rejected), duplicates)


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder; expected a CSV file")
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: no such file") from error
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read: {error.strerror}") from error


def _header(
    path: Path, reader: Any, column_map: Mapping[str, str] | None
) -> tuple[list[str], list[str]]:
    """The header's column names after `column_map`, and as the file has them.

    Every problem with the header is fatal.
    """
    try:
        header = next(reader, [])
    except csv.Error as error:
        raise DatasetError(f"{path}: line 1 (the header): {error}") from error
    columns = [name.strip() for name in header]
    if any(_UNREADABLE.search(name) for name in columns):
        raise DatasetError(f"{path}: line 1 (the header) is not UTF-8 text: {header!r}")
    mapping = dict(column_map or {})
    unknown = sorted(set(mapping.values()) - set(REQUIRED_COLUMNS))
    if unknown:
        raise DatasetError(f"column_map names {unknown}; columns map onto {REQUIRED_COLUMNS}")
    mapped = [mapping.get(name, name) for name in columns]
    for name in REQUIRED_COLUMNS:
        sources = [columns[k] for k, target in enumerate(mapped) if target == name]
        if len(sources) > 1:
            raise DatasetError(
                f"{path}: line 1: {len(sources)} columns would be {name!r} ({sources}); "
                "rename or map one of them"
            )
    missing = [name for name in REQUIRED_COLUMNS if name not in mapped]
    if missing:
        raise DatasetError(
            f"{path}: missing columns {missing} (found {columns}); map yours with column_map "
            "(--user-column, --event-column, --time-column)"
        )
    return mapped, columns


def _row_problem(record: list[str], width: int, wanted: list[int], labels: list[str]) -> str | None:
    """Why a row cannot be used, or None; `labels` name the wanted columns in the file."""
    if len(record) != width:
        return f"expected {width} fields, found {len(record)}"
    for k, name in zip(wanted, labels, strict=True):
        value = record[k].strip()
        if not value:
            return f"empty {name}"
        bad = _UNREADABLE.search(value)
        if bad:
            char = bad.group()
            if "\udc80" <= char <= "\udcff":
                byte = ord(char) - 0xDC00
                return f"{name} is not UTF-8 text (byte 0x{byte:02x})"
            what = "a NUL byte" if char == "\x00" else f"the control character {char!r}"
            return f"{name} contains {what}"
    return None


def _records_at(text: str, first_lines: set[int]) -> dict[int, list[str]]:
    """The records of `text` (header included) that start on `first_lines`."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    found: dict[int, list[str]] = {}
    line = 0
    for record in reader:
        first_line, line = line + 1, reader.line_num
        if first_line in first_lines:
            found[first_line] = record
            if len(found) == len(first_lines):
                break
    return found


def _shown(record: list[str]) -> str:
    text = ",".join(record)
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _parse_times(stamps: list[str], label: str = "timestamp") -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds of each text, and per row an empty string or the reason it is unreadable.

    `label` names the time column in the reasons.

    Numbers are seconds, milliseconds, microseconds or nanoseconds by magnitude: each unit
    is taken up to 10^11 seconds (the year 5138), so the ranges do not overlap.
    """
    text = pd.Series(stamps, dtype=object)
    numeric = pd.to_numeric(text, errors="coerce").astype("float64")
    is_number = numeric.notna().to_numpy()
    seconds = np.zeros(len(text), dtype=np.float64)
    reasons = np.full(len(text), "", dtype=object)
    values = numeric.to_numpy()
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(values)
        unit = np.select(
            [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17, magnitude < 1e20],
            [1.0, 1e3, 1e6, 1e9],
            default=np.nan,
        )
    seconds[is_number] = np.floor(values[is_number] / unit[is_number])
    texts = ~is_number
    if texts.any():
        parsed = pd.to_datetime(text[texts], utc=True, errors="coerce", format="ISO8601")
        ok = parsed.notna().to_numpy()
        as_seconds = np.full(int(texts.sum()), np.nan)
        as_seconds[ok] = _unix_seconds(parsed[ok]).to_numpy(dtype=np.float64)
        seconds[texts] = as_seconds
    unreadable = ~np.isfinite(seconds)
    out_of_range = ~unreadable & ((seconds < 0) | (seconds >= LATEST_TIME))
    for k in np.flatnonzero(unreadable):
        reasons[k] = (
            f"{label} {stamps[k]!r} is neither ISO 8601 text nor Unix seconds, "
            "milliseconds, microseconds or nanoseconds"
        )
    for k in np.flatnonzero(out_of_range):
        reasons[k] = f"{label} {stamps[k]!r} lies outside 1970-01-01 to 2099-12-31"
    seconds[unreadable] = 0
    return seconds.astype(np.int64), reasons


def _never_occurs(
    path: Path, events: pd.Series, conversion_event: str, rejected: list[RejectedRow]
) -> str:
    counts = events.value_counts()
    near = [n for n in counts.index if str(n).casefold() == conversion_event.casefold()]
    hint = f"; did you mean {near[0]!r}?" if near else ""
    common = ", ".join(f"{name!r} ({count:,})" for name, count in counts.head(8).items())
    aside = f"; {len(rejected):,} rows were set aside, the first: {rejected[0]}" if rejected else ""
    return (
        f"{path}: the conversion event {conversion_event!r} never occurs in the readable rows"
        f"{hint} (most frequent events: {common}){aside}"
    )
