"""The contact attributes nextbest writes, and the check of every value against its type.

Intercom rejects a value its attribute's type does not accept, and a rejected request changes
nothing for that contact. Checking each value before sending turns a bad value into a clear,
per-contact report instead of a 400 in the middle of a run.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from ml.intercom_text import STRING_MAX_CHARS, is_unsafe_char

DataType = Literal["string", "integer", "float", "boolean", "date", "datetime"]


# Unix seconds above this are most likely milliseconds (year 5138 and later as seconds).
_MAX_UNIX_SECONDS = 10**11

# Intercom forbids `.` and `$` in attribute names; we also keep to a plain identifier so the
# names read the same in messages' targeting rules.
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,189}$")


@dataclass(frozen=True)
class AttributeSpec:
    """One custom contact attribute: its exact (case-sensitive) name and Intercom data type."""

    name: str
    data_type: DataType
    description: str


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec("nb_next_action", "string", "Key of the user's next best action."),
    AttributeSpec("nb_next_action_label", "string", "Readable label of the next best action."),
    AttributeSpec("nb_conversion_score", "float", "Probability of converting, 0 to 1."),
    AttributeSpec("nb_updated_at", "date", "When nextbest last changed the recommendation."),
)
"""The attributes the write-back owns, in the order they are written and audited."""

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(spec.name for spec in ATTRIBUTES)


class InvalidAttributeValue(ValueError):
    """A value the attribute's type would reject, with the reason."""


def check_attribute_name(name: str) -> str:
    """Return `name` when Intercom accepts it as a custom attribute name.

    Raises:
        InvalidAttributeValue: The name holds `.` or `$`, or is not a plain identifier.
    """
    if "." in name or "$" in name:
        raise InvalidAttributeValue(f"attribute name {name!r} contains '.' or '$'")
    if not _NAME_PATTERN.match(name):
        raise InvalidAttributeValue(
            f"attribute name {name!r} is not a letter followed by letters, digits or '_'"
        )
    return name


def to_unix_seconds(value: datetime | date) -> int:
    """Unix seconds of a datetime (naive means UTC) or of midnight UTC of a date."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())


def validate_value(value: Any, data_type: DataType) -> Any:
    """Check one value against an Intercom data type and return it in the form to send.

    `None` is valid for every type: it clears the attribute. Dates and datetimes are sent as
    integer Unix seconds; a `date` attribute's value is the midnight UTC of its day.

    Returns:
        The value to put in the request's JSON body.

    Raises:
        InvalidAttributeValue: The value does not fit the type; the message says why.
    """
    if value is None:
        return None
    if isinstance(value, dict | list | tuple | set):
        raise InvalidAttributeValue(f"a {type(value).__name__} is not a {data_type} value")
    if data_type == "string":
        if not isinstance(value, str):
            raise InvalidAttributeValue(f"{value!r} is a {type(value).__name__}, not a string")
        if len(value) > STRING_MAX_CHARS:
            raise InvalidAttributeValue(
                f"string of {len(value)} characters is over Intercom's {STRING_MAX_CHARS}"
            )
        unsafe = [i for i, char in enumerate(value) if is_unsafe_char(char)]
        if unsafe:
            first = unsafe[0]
            where = f"U+{ord(value[first]):04X} at character {first + 1} of {len(value)}"
            if len(unsafe) == 1:
                found = f"1 line-break or control character ({where})"
            else:
                found = f"{len(unsafe)} line-break or control characters (the first {where})"
            raise InvalidAttributeValue(f"string holds {found}; Intercom shows one line of text")
        return value
    if data_type == "boolean":
        if not isinstance(value, bool):
            raise InvalidAttributeValue(f"{value!r} is not a boolean")
        return value
    if data_type in ("integer", "float"):
        return _validate_number(value, data_type)
    if data_type in ("date", "datetime"):
        return _validate_timestamp(value, data_type)
    raise InvalidAttributeValue(f"unknown data type {data_type!r}")


def _validate_number(value: Any, data_type: DataType) -> int | float:
    # bool is an int subclass in Python, but Intercom would store "true", not a number.
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise InvalidAttributeValue(f"{value!r} is a {type(value).__name__}, not a {data_type}")
    # DuckDB's DECIMAL columns and numpy scalars arrive as other number types; JSON needs
    # plain int or float.
    if isinstance(value, Decimal) or not isinstance(value, int | float):
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidAttributeValue(f"{value!r} is not a finite {data_type}")
    if data_type == "integer":
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidAttributeValue(f"{value!r} is not a whole number")
            value = int(value)
        if abs(value) > 2**63 - 1:
            raise InvalidAttributeValue(f"{value!r} is outside the 64-bit integer range")
        return value
    return float(value)


def _validate_timestamp(value: Any, data_type: DataType) -> int:
    if isinstance(value, datetime) and data_type == "date":
        seconds = to_unix_seconds(value.date())
    elif isinstance(value, datetime | date):
        seconds = to_unix_seconds(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise InvalidAttributeValue(
            f"{value!r} is a {type(value).__name__}, not a {data_type} (Unix seconds)"
        )
    if seconds < 0 or seconds >= _MAX_UNIX_SECONDS:
        raise InvalidAttributeValue(
            f"{seconds} is not plausible Unix seconds (milliseconds sent as seconds?)"
        )
    return seconds
