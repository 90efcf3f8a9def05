"""Sending the write plan to Intercom: attributes first, then contacts with bounded concurrency.

The clients own retries and rate limiting (429 and 5xx are retried with back-off there); what
reaches this module is a final answer per contact. A 404 (merged, deleted, archived contact) and
a 400 (Intercom's message kept) are recorded for that contact and the run goes on; a 401 or
403 refuses the token for every contact alike, and a 404 that is not Intercom's error list
comes from a wrong host: both stop the run. Any other exception while writing a contact (a bug,
an unexpected library error) is recorded for that contact as `error` with its type and
message; the other writes go on, and the run fails once they are all recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestration.activation import store
from orchestration.activation.plan import ContactWrite
from orchestration.activation.values import ATTRIBUTES, check_attribute_name
from orchestration.clients.intercom import (
    AsyncIntercomClient,
    IntercomBadRequest,
    IntercomClient,
    IntercomError,
    IntercomNotFound,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class WriteBackError(RuntimeError):
    """The write-back cannot do its job safely (wrong attribute type, failed read-back)."""


def ensure_data_attributes(client: IntercomClient) -> dict[str, list[str]]:
    """Create the missing contact attributes with their types; check the existing ones.

    Intercom answers 400 when creating an existing name, so the list is read first. Names are
    case-sensitive: `NB_next_action` is another attribute.

    Returns:
        `{"existing": [...], "created": [...]}` attribute names.

    Raises:
        WriteBackError: An attribute of ours exists with another type or is archived, so
            every write to it would be rejected.
    """
    present = {a.get("name"): a for a in client.list_data_attributes("contact")}
    outcome: dict[str, list[str]] = {"existing": [], "created": []}
    for spec in ATTRIBUTES:
        check_attribute_name(spec.name)
        found = present.get(spec.name)
        if found is None:
            client.create_data_attribute(spec.name, spec.data_type, description=spec.description)
            outcome["created"].append(spec.name)
            continue
        if found.get("data_type") != spec.data_type:
            raise WriteBackError(
                f"contact attribute {spec.name!r} exists as {found.get('data_type')!r}, "
                f"nextbest needs {spec.data_type!r}; rename or archive it in Intercom"
            )
        if found.get("archived"):
            raise WriteBackError(f"contact attribute {spec.name!r} is archived in Intercom")
        outcome["existing"].append(spec.name)
    return outcome


@dataclass
class SendOutcome:
    """Audit rows of every attempt, and what the read-back found."""

    rows: list[store.AuditRow] = field(default_factory=list)
    read_back_contact: str | None = None
    # Contacts whose write raised an exception other than IntercomError, with it.
    unexpected: list[tuple[str, Exception]] = field(default_factory=list)


def _rows(
    write: ContactWrite,
    status: str,
    at: datetime,
    http_status: int | None = None,
    message: str | None = None,
) -> list[store.AuditRow]:
    rows = []
    for change in write.changes:
        row_status, row_message = status, message
        if change.attribute in write.invalid:
            row_status, row_message = store.INVALID, write.invalid[change.attribute]
        elif write.invalid:
            bad = ", ".join(sorted(write.invalid))
            row_status, row_message = store.NOT_SENT, f"not sent: invalid value for {bad}"
        new_json = change.new_json
        if new_json is None and change.attribute in write.invalid:
            new_json = _describe(change.new_value)
        rows.append(
            store.AuditRow(
                contact_id=write.contact_id,
                user_id=write.user_id,
                attribute=change.attribute,
                old_value=change.old_value,
                new_value=new_json,
                status=row_status,
                http_status=http_status,
                message=row_message,
                attempted_at=at,
            )
        )
    return rows


def _describe(value: Any) -> str:
    # A rejected value is kept in the audit as JSON when it can be, else as its repr.
    try:
        return json.dumps(value, allow_nan=False)[:1000]
    except (TypeError, ValueError):
        return repr(value)[:1000]


def plan_rows(writes: list[ContactWrite], clock: Clock = utc_now) -> list[store.AuditRow]:
    """Audit rows of a dry run: every change as `planned`, invalid values as `invalid`."""
    rows: list[store.AuditRow] = []
    for write in writes:
        rows += _rows(write, store.PLANNED, clock())
    return rows


def invalid_rows(writes: list[ContactWrite], clock: Clock = utc_now) -> list[store.AuditRow]:
    """Audit rows of contacts not sent because one of their values failed its type check."""
    rows: list[store.AuditRow] = []
    for write in writes:
        rows += _rows(write, store.INVALID, clock())
    return rows


async def _send_one(
    client: AsyncIntercomClient, write: ContactWrite, clock: Clock, outcome: SendOutcome
) -> list[store.AuditRow]:
    try:
        await client.update_contact(write.contact_id, write.body)
    except IntercomNotFound as exc:
        if exc.code is None:
            # Not Intercom's error list (a proxy's or a wrong host's page): nothing says the
            # contact is gone, so it is not recorded as such.
            message = f"404 without Intercom's error list: {exc.message}"
            return _rows(write, store.ERROR, clock(), exc.status, message)
        log.info("contact %s answered 404, skipped: %s", write.contact_id, exc.message)
        return _rows(write, store.NOT_FOUND, clock(), exc.status, exc.message)
    except IntercomBadRequest as exc:
        log.warning("contact %s answered 400: %s", write.contact_id, exc.message)
        return _rows(write, store.BAD_REQUEST, clock(), exc.status, exc.message)
    except IntercomError as exc:
        # Retries are spent (429, 5xx, no answer) or another 4xx: record it and go on; the
        # state is not updated, so the next run tries this contact again.
        log.warning("contact %s failed: %s", write.contact_id, exc)
        # Intercom's code and message; an answer without an error list has no code.
        reason = " ".join(part for part in (exc.code, exc.message) if part)
        return _rows(write, store.ERROR, clock(), exc.status, reason)
    except Exception as exc:
        # No answer of Intercom's but a bug or an unexpected library error: this contact is
        # recorded as failed (its state is not updated) and the others go on; `send_writes`
        # fails the run once every write is recorded.
        log.error("contact %s failed with %s", write.contact_id, _name(exc), exc_info=exc)
        outcome.unexpected.append((write.contact_id, exc))
        return _rows(write, store.ERROR, clock(), None, _name(exc))
    return _rows(write, store.OK, clock(), 200)


def _name(exc: BaseException) -> str:
    """`Type: message` of an exception, for the audit and the run's error."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# A token that may not write (invalid, revoked, missing a scope) is refused for every contact.
_TOKEN_REFUSED = (401, 403)


def _stopping_error(rows: list[store.AuditRow], outcome: SendOutcome) -> WriteBackError | None:
    """The error that stops the run when this contact's answer holds for every contact.

    That is a refused token (401, 403), or a 404 that is not Intercom's (a wrong host or
    path answers it for every contact alike); None otherwise.
    """
    if not rows:
        return None
    first = rows[0]
    message = (first.message or "").strip()
    if first.http_status in _TOKEN_REFUSED:
        text = (
            f"Intercom refused the access token with {first.http_status} on contact "
            f"{first.contact_id} ({message}): every write would be refused; check that "
            "INTERCOM_ACCESS_TOKEN is valid and may write contacts"
        )
    elif first.http_status == 404 and first.status == store.ERROR:
        text = (
            f"contact {first.contact_id} answered {message}; every contact would, so none is "
            "recorded as gone: check INTERCOM_BASE_URL and INTERCOM_REGION"
        )
    else:
        return None
    error = WriteBackError(text)
    error.outcome = outcome  # type: ignore[attr-defined]
    return error


def _matches(sent: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Attributes whose read-back value differs from what was sent."""
    wrong = []
    for name, value in sent.items():
        got = found.get(name)
        same = got == value
        if isinstance(value, float) and isinstance(got, int | float):
            same = math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12)
        if not same:
            wrong.append(f"{name}: sent {value!r}, read back {got!r}")
    return wrong


async def send_writes(
    client: AsyncIntercomClient,
    writes: list[ContactWrite],
    *,
    concurrency: int,
    read_back: bool = True,
    clock: Clock = utc_now,
) -> SendOutcome:
    """Send every write, at most `concurrency` at once, and return the audit rows.

    The first successful write is read back (`GET /contacts/{id}`) before the others go out:
    a name or type Intercom stores differently from what was sent stops the run after one
    contact instead of after thousands. A contact deleted between its write and the read-back
    (404) passes the read-back on to the next one. A 401 or 403 refuses the token itself, and
    a 404 without Intercom's error list comes from a wrong host: either stops the run there,
    and writes not yet sent are left for the next run. A contact whose write raised any other
    exception is recorded as `error` and the others are still sent; the run fails at the end.

    Raises:
        WriteBackError: The read-back differs from what was sent, or failed (429, 5xx or no
            answer after retries), or Intercom refused the token (401, 403), or a write raised
            an exception other than `IntercomError` (then the cause of this one); the rows so
            far, every write Intercom accepted included, are on the exception as `outcome`.
    """
    outcome = SendOutcome()
    try:
        await _send_all(client, writes, outcome, concurrency, read_back, clock)
    except WriteBackError as error:
        error.outcome = outcome  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        # Whatever ended the sends, the rows so far go with the error to be recorded.
        error = WriteBackError(f"the write-back stopped on {_name(exc)}")
        error.outcome = outcome  # type: ignore[attr-defined]
        raise error from exc
    if outcome.unexpected:
        contact_id, first = outcome.unexpected[0]
        text = f"contact {contact_id} failed with {_name(first)}"
        if len(outcome.unexpected) > 1:
            text += f", and {len(outcome.unexpected) - 1} more with unexpected errors"
        error = WriteBackError(f"{text}; the other contacts were sent")
        error.outcome = outcome  # type: ignore[attr-defined]
        raise error from first
    return outcome


async def _send_all(
    client: AsyncIntercomClient,
    writes: list[ContactWrite],
    outcome: SendOutcome,
    concurrency: int,
    read_back: bool,
    clock: Clock,
) -> None:
    """The sends of `send_writes`, adding their audit rows to `outcome` as they end."""
    pending = list(writes)
    if read_back:
        while pending:
            write = pending.pop(0)
            rows = await _send_one(client, write, clock, outcome)
            outcome.rows += rows
            refused = _stopping_error(rows, outcome)
            if refused is not None:
                raise refused
            if rows and rows[0].status == store.OK:
                try:
                    found = await client.get_contact(write.contact_id)
                except IntercomError as exc:
                    if isinstance(exc, IntercomNotFound) and exc.code is not None:
                        # Deleted or merged since its PUT: that tells nothing of how Intercom
                        # stores the values, so the next written contact is read back instead.
                        log.info(
                            "contact %s answered 404 on read-back, reading back the next: %s",
                            write.contact_id,
                            exc.message,
                        )
                        continue
                    # The PUT was accepted, so its rows must reach the audit and the state; but
                    # an unverified first write is no ground to send thousands more.
                    raise WriteBackError(
                        f"contact {write.contact_id} was written but could not be read back: {exc}"
                    ) from exc
                except Exception as exc:
                    raise WriteBackError(
                        f"contact {write.contact_id} was written but could not be read back: "
                        f"{_name(exc)}"
                    ) from exc
                attributes = found.get("custom_attributes") or {}
                if not isinstance(attributes, dict):
                    raise WriteBackError(
                        f"contact {write.contact_id} was written but its read-back "
                        f"custom_attributes is a {type(attributes).__name__}, not an object"
                    )
                wrong = _matches(write.body, attributes)
                outcome.read_back_contact = write.contact_id
                if wrong:
                    raise WriteBackError(
                        f"contact {write.contact_id} read back differently: {'; '.join(wrong)}"
                    )
                break
    semaphore = asyncio.Semaphore(concurrency)
    refusals: list[WriteBackError] = []

    async def bounded(write: ContactWrite) -> list[store.AuditRow]:
        async with semaphore:
            if refusals:
                # Not attempted: the state is unchanged, so the next run sends it.
                return []
            rows = await _send_one(client, write, clock, outcome)
            refused = _stopping_error(rows, outcome)
            if refused is not None:
                refusals.append(refused)
            return rows

    # Every send runs to its end even when one raises, so no accepted write loses its rows.
    results = await asyncio.gather(*(bounded(w) for w in pending), return_exceptions=True)
    for result in results:
        if not isinstance(result, BaseException):
            outcome.rows += result
    if refusals:
        raise refusals[0]
    for result in results:
        if isinstance(result, BaseException):
            raise result
