"""The sandbox's in-memory store: contacts, companies, events and Stripe objects.

Bulk data lives in columns (numpy arrays and lists) built once, vectorised, from an event log;
objects are rendered to the vendors' JSON shapes only when asked for. Every lookup the API needs
is indexed (ids, external ids, a contact's slice of the event arrays, Stripe ids and `created`),
so a page answers in milliseconds at 100,000 contacts and 5,000,000 events.

Every public method takes the store's lock: the HTTP server runs in its own thread while tests
inspect and mutate the same store.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

STRIPE_KINDS = ("customers", "subscriptions", "invoices", "charges", "refunds", "events")
STRIPE_OBJECT = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "refunds": "refund",
    "events": "event",
}
# Stripe keeps events for 30 days.
STRIPE_EVENT_RETENTION_SECONDS = 30 * 86400
ATTRIBUTE_TYPES = ("string", "integer", "float", "boolean", "date", "datetime")
MAX_CUSTOM_ATTRIBUTES = 250
MAX_STRING_LENGTH = 255
INT64_MAX = 2**63 - 1
# The clock moves forward only, and by at most ten years at a time.
MAX_CLOCK_ADVANCE = 10 * 365 * 86400


class ApiError(Exception):
    """An error the API answers with: HTTP status, vendor error code, message, field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _stripe_templates() -> dict[str, dict]:
    """One object of each kind from Stripe's fixtures, the base every rendered object extends."""
    from sandbox import stripe_fixtures

    return stripe_fixtures.templates()


@dataclass
class StripeTable:
    """Objects of one Stripe kind in `created` order (oldest first), indexed by id."""

    objects: list[dict] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, obj: dict) -> None:
        """Append an object; `created` must not precede the newest one already held."""
        if self.created and obj["created"] < self.created[-1]:
            position = bisect.bisect_right(self.created, obj["created"])
            self.objects.insert(position, obj)
            self.created.insert(position, obj["created"])
            for i in range(position, len(self.objects)):
                self.index[self.objects[i]["id"]] = i
            return
        self.index[obj["id"]] = len(self.objects)
        self.objects.append(obj)
        self.created.append(obj["created"])

    def get(self, object_id: str) -> dict | None:
        """The stored object with this id, or None."""
        position = self.index.get(object_id)
        return None if position is None else self.objects[position]


@dataclass
class Contacts:
    """Contacts in columns; position `i` is one contact everywhere."""

    ids: list[str]
    external_ids: list[str | None]
    emails: list[str | None]
    names: list[str | None]
    roles: list[str]
    created_at: np.ndarray
    updated_at: np.ndarray
    signed_up_at: np.ndarray  # -1 when unknown (leads)
    last_seen_at: np.ndarray
    company: np.ndarray  # index into the companies, -1 for none
    country: list[str]
    city: list[str]
    custom: list[dict]
    state: list[str | None]  # None (live), "archived", "deleted" or "merged"
    live: np.ndarray  # boolean mirror of `state is None`, for vectorised paging

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Events:
    """Events sorted by contact then time, with each contact's slice in `offsets`."""

    contact: np.ndarray  # int32 positions into Contacts
    name: np.ndarray  # int32 codes into `names`
    created_at: np.ndarray  # int64 Unix seconds
    names: list[str]
    offsets: np.ndarray  # contact i's events are [offsets[i], offsets[i + 1])

    def __len__(self) -> int:
        return len(self.contact)


class Store:
    """Everything the sandbox serves, with the mutations the API and the admin API make."""

    def __init__(
        self,
        *,
        dataset: str,
        conversion_event: str,
        contacts: Contacts,
        events: Events,
        companies: list[dict],
        clock: int,
        event_window_days: int = 90,
        workspace_id: str = "sandbox0",
    ):
        self.lock = threading.RLock()
        self.dataset = dataset
        self.conversion_event = conversion_event
        self.contacts = contacts
        self.events = events
        self.companies = companies
        self.event_window_days = event_window_days
        self.workspace_id = workspace_id
        self._clock0 = int(clock)
        self._real0 = time.time()
        self._clock_offset = 0
        self.id_index = {cid: i for i, cid in enumerate(contacts.ids)}
        self.external_index = {
            ext: i for i, ext in enumerate(contacts.external_ids) if ext is not None
        }
        self.extra_events: dict[int, list[tuple[str, int, dict, str]]] = {}
        self.merged_into: dict[int, int] = {}
        self.data_attributes: list[dict] = _builtin_attributes()
        self.writes: list[dict] = []
        self.dirt: list[dict] = []
        # Rows of a user's events file that were set aside: line, reason, record.
        self.rejected: list[dict] = []
        self.duplicate_rows = 0
        self.stripe: dict[str, StripeTable] = {kind: StripeTable() for kind in STRIPE_KINDS}
        self.deleted_customers: set[str] = set()
        # Stripe objects gone altogether: in no list, and a fetch answers 404.
        self.removed: set[str] = set()
        self._templates = _stripe_templates()
        self._sequence = 0
        self.scroll: dict[str, Any] | None = None

    # ---- time -------------------------------------------------------------------------------

    def now(self) -> int:
        """The sandbox clock: the dataset's 'now', ticking with real time from the start."""
        return int(self._clock0 + (time.time() - self._real0) + self._clock_offset)

    def advance_clock(self, seconds: int) -> int:
        """Move the clock forward by `seconds` (0 to ten years); returns the new time."""
        if not _is_integer(seconds) or not 0 <= seconds <= MAX_CLOCK_ADVANCE:
            raise ApiError(
                400,
                "parameter_invalid",
                f"advance_seconds must be a whole number from 0 to {MAX_CLOCK_ADVANCE}",
            )
        with self.lock:
            self._clock_offset += int(seconds)
            return self.now()

    def window_start(self) -> int | None:
        """Oldest `created_at` the events API still serves, or None when the window is off."""
        if not self.event_window_days:
            return None
        return self.now() - self.event_window_days * 86400

    def next_id(self, prefix: str) -> str:
        """A fresh, deterministic id for objects created at run time."""
        with self.lock:
            self._sequence += 1
            return f"{prefix}{self._sequence:014d}"

    # ---- contacts ---------------------------------------------------------------------------

    def contact_position(self, contact_id: str, *, allow_gone: bool = False) -> int:
        """Position of a contact by Intercom id; 404 when unknown, merged, deleted or archived."""
        position = self.id_index.get(contact_id)
        if position is None or (not allow_gone and self.contacts.state[position] is not None):
            raise ApiError(404, "not_found", "User Not Found")
        return position

    def render_contact(self, i: int) -> dict:
        """Contact `i` in the shape of Intercom 2.14's `contact` schema."""
        c = self.contacts
        cid = c.ids[i]
        email = c.emails[i] or ""
        signed = int(c.signed_up_at[i])
        company = int(c.company[i])
        companies = []
        if company >= 0 and company < len(self.companies):
            company_id = self.companies[company]["id"]
            companies = [{"type": "company", "id": company_id, "url": f"/companies/{company_id}"}]
        return {
            "type": "contact",
            "id": cid,
            "workspace_id": self.workspace_id,
            "external_id": c.external_ids[i],
            "role": c.roles[i],
            "email": email,
            "email_domain": email.partition("@")[2],
            "phone": None,
            "name": c.names[i],
            "owner_id": None,
            "has_hard_bounced": False,
            "marked_email_as_spam": False,
            "unsubscribed_from_emails": False,
            "created_at": int(c.created_at[i]),
            "updated_at": int(c.updated_at[i]),
            "signed_up_at": signed if signed >= 0 else None,
            "last_seen_at": int(c.last_seen_at[i]),
            "last_replied_at": None,
            "last_contacted_at": None,
            "last_email_opened_at": None,
            "last_email_clicked_at": None,
            "language_override": None,
            "browser": "chrome",
            "browser_version": "120.0.0",
            "browser_language": "en",
            "os": "OS X 14",
            "android_app_name": None,
            "android_app_version": None,
            "android_device": None,
            "android_os_version": None,
            "android_sdk_version": None,
            "android_last_seen_at": None,
            "ios_app_name": None,
            "ios_app_version": None,
            "ios_device": None,
            "ios_os_version": None,
            "ios_sdk_version": None,
            "ios_last_seen_at": None,
            "custom_attributes": dict(c.custom[i]),
            "avatar": None,
            "tags": _addressable([], f"/contacts/{cid}/tags"),
            "notes": _addressable([], f"/contacts/{cid}/notes"),
            "companies": {
                "type": "list",
                "data": companies,
                "url": f"/contacts/{cid}/companies",
                "total_count": len(companies),
                "has_more": False,
            },
            "location": {
                "type": "location",
                "country": c.country[i],
                "region": None,
                "city": c.city[i],
            },
            "social_profiles": {"type": "list", "data": []},
        }

    def live_positions(self, after: int, limit: int) -> np.ndarray:
        """Up to `limit` positions of live contacts after position `after`, in order."""
        start = after + 1
        found = np.flatnonzero(self.contacts.live[start : start + limit * 4 + 64])
        if len(found) < limit:
            found = np.flatnonzero(self.contacts.live[start:])
        return found[:limit] + start

    def live_count(self) -> int:
        """How many contacts the API lists."""
        return int(self.contacts.live.sum())

    def find_by_external_id(self, external_id: str) -> int:
        """Position of the live contact with this external id; 404 otherwise."""
        position = self.external_index.get(external_id)
        if position is None or self.contacts.state[position] is not None:
            raise ApiError(404, "not_found", "User Not Found")
        return position

    def touch(self, i: int) -> None:
        """Mark contact `i` as updated now."""
        self.contacts.updated_at[i] = max(int(self.contacts.updated_at[i]), self.now())

    def update_contact(self, contact_id: str, body: dict) -> dict:
        """Apply a `PUT /contacts/{id}` body, checking custom attributes against their types.

        Every attempt is recorded (see `writes`), failed ones with their errors.
        """
        with self.lock:
            record = {
                "contact_id": contact_id,
                "attributes": body.get("custom_attributes") or {},
                "received_at": time.time(),
                "clock": self.now(),
                "status": 200,
                "errors": [],
            }
            self.writes.append(record)
            try:
                i = self.contact_position(contact_id)
                custom = body.get("custom_attributes") or {}
                if not isinstance(custom, dict):
                    raise ApiError(400, "parameter_invalid", "custom_attributes must be an object")
                errors = [e for name, value in custom.items() for e in self._check(name, value)]
                for key in ("name", "email"):
                    value = body.get(key)
                    if value is not None and not (
                        isinstance(value, str) and len(value) <= MAX_STRING_LENGTH
                    ):
                        errors.append(f"{key} must be a string of at most {MAX_STRING_LENGTH}")
                if errors:
                    record["status"], record["errors"] = 400, errors
                    raise ApiError(400, "parameter_invalid", "; ".join(errors))
                for name, value in custom.items():
                    if value is None:
                        self.contacts.custom[i].pop(name, None)
                    else:
                        self.contacts.custom[i][name] = value
                for key in ("name", "email"):
                    if key in body:
                        getattr(self.contacts, f"{key}s")[i] = body[key]
                self.touch(i)
                return self.render_contact(i)
            except ApiError as error:
                record["status"] = error.status
                record["errors"] = record["errors"] or [error.message]
                raise

    def _check(self, name: str, value: Any) -> list[str]:
        definition = next(
            (
                a
                for a in self.data_attributes
                if a["model"] == "contact" and a["custom"] and a["name"] == name
            ),
            None,
        )
        if definition is None:
            return [f"Custom attribute '{name}' does not exist"]
        if value is None:
            return []
        kind = definition["data_type"]
        ok = _fits(kind, value)
        if ok:
            return []
        if kind == "string" and isinstance(value, str):
            return [f"Custom attribute '{name}' is longer than {MAX_STRING_LENGTH} characters"]
        return [f"Custom attribute '{name}' expects a {kind}, got {type(value).__name__}"]

    def create_data_attribute(self, body: dict) -> dict:
        """`POST /data_attributes`: a new custom attribute; 400 on a duplicate or bad name."""
        with self.lock:
            name = body.get("name")
            model = body.get("model", "contact")
            data_type = body.get("data_type")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, "parameter_not_found", "Name is required", "name")
            if "." in name or "$" in name:
                raise ApiError(400, "parameter_invalid", "Name may not contain '.' or '$'", "name")
            if model not in ("contact", "company"):
                raise ApiError(400, "parameter_invalid", f"Unknown model {model!r}", "model")
            if data_type not in ATTRIBUTE_TYPES:
                raise ApiError(
                    400, "parameter_invalid", f"Unknown data_type {data_type!r}", "data_type"
                )
            if any(a["name"] == name and a["model"] == model for a in self.data_attributes):
                raise ApiError(
                    400, "parameter_invalid", f"You already have '{name}' in your workspace"
                )
            if sum(a["custom"] for a in self.data_attributes) >= MAX_CUSTOM_ATTRIBUTES:
                raise ApiError(400, "parameter_invalid", "Limit of 250 custom attributes reached")
            now = self.now()
            attribute = {
                "type": "data_attribute",
                "id": 100_000 + len(self.data_attributes),
                "model": model,
                "name": name,
                "full_name": f"custom_attributes.{name}",
                "label": name,
                "description": body.get("description") or "",
                "data_type": data_type,
                "api_writable": True,
                "messenger_writable": bool(body.get("messenger_writable", False)),
                "ui_writable": True,
                "custom": True,
                "archived": False,
                "created_at": now,
                "updated_at": now,
                "admin_id": "0",
            }
            self.data_attributes.append(attribute)
            return attribute

    # ---- events -----------------------------------------------------------------------------

    def contact_events(self, i: int, *, newest_first: bool = True) -> list[tuple]:
        """Contact `i`'s events visible now: (name, created_at, metadata, id), newest first.

        The event window hides events older than `event_window_days` before the clock.
        """
        e = self.events
        lo, hi = int(e.offsets[i]), int(e.offsets[i + 1])
        times = e.created_at[lo:hi]
        start = self.window_start()
        first = lo if start is None else lo + int(np.searchsorted(times, start, side="left"))
        names = e.names
        rows = [
            (names[code], int(t), {}, f"{k:024x}")
            for k, code, t in zip(
                range(first, hi),
                e.name[first:hi].tolist(),
                e.created_at[first:hi].tolist(),
                strict=True,
            )
        ]
        for merged_from, target in self.merged_into.items():
            if target == i:
                rows.extend(self.contact_events(merged_from, newest_first=False))
        extra = self.extra_events.get(i, [])
        rows.extend(r for r in extra if start is None or r[1] >= start)
        rows.sort(key=lambda r: (r[1], r[3]), reverse=newest_first)
        return rows

    def add_event(self, body: dict) -> None:
        """`POST /events`: record an event for the contact named by id, user_id or email.

        Duplicates of the same contact, name and `created_at` are dropped, as Intercom does.
        """
        with self.lock:
            name = body.get("event_name")
            created = body.get("created_at")
            if not isinstance(name, str) or not name:
                raise ApiError(400, "parameter_not_found", "event_name is required", "event_name")
            if not _is_integer(created) or created < 0:
                raise ApiError(400, "parameter_invalid", "created_at must be Unix seconds")
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ApiError(400, "parameter_invalid", "metadata must be an object", "metadata")
            if len(metadata) > 10:
                raise ApiError(400, "parameter_invalid", "At most 10 metadata keys")
            for key, kinds in (("id", str), ("user_id", str | int), ("email", str)):
                value = body.get(key)
                if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                    raise ApiError(400, "parameter_invalid", f"{key} must be a string", key)
            if body.get("id"):
                i = self.contact_position(body["id"])
            elif body.get("user_id"):
                i = self.find_by_external_id(str(body["user_id"]))
            elif body.get("email"):
                matches = [
                    k
                    for k, em in enumerate(self.contacts.emails)
                    if em == body["email"] and self.contacts.state[k] is None
                ]
                if not matches:
                    raise ApiError(404, "not_found", "User Not Found")
                i = matches[0]
            else:
                raise ApiError(400, "parameter_not_found", "id, user_id or email is required")
            if self._has_event(i, name, created):
                return
            self.extra_events.setdefault(i, []).append(
                (name, created, dict(metadata), self.next_id("evx"))
            )
            self.contacts.last_seen_at[i] = max(int(self.contacts.last_seen_at[i]), created)
            self.touch(i)

    def _has_event(self, i: int, name: str, created: int) -> bool:
        e = self.events
        lo, hi = int(e.offsets[i]), int(e.offsets[i + 1])
        a = lo + int(np.searchsorted(e.created_at[lo:hi], created, side="left"))
        b = lo + int(np.searchsorted(e.created_at[lo:hi], created, side="right"))
        if any(e.names[code] == name for code in e.name[a:b].tolist()):
            return True
        return any(r[0] == name and r[1] == created for r in self.extra_events.get(i, []))

    def event_count(self) -> int:
        """Every event held, visible or not: the log's plus those posted since."""
        return len(self.events) + sum(len(v) for v in self.extra_events.values())

    # ---- contact lifecycle (admin mutations) ------------------------------------------------

    def set_contact_state(self, contact_id: str, state: str) -> None:
        """Archive or delete a contact: lists, search and lookups stop finding it."""
        with self.lock:
            i = self.contact_position(contact_id)
            self.contacts.state[i] = state
            self.contacts.live[i] = False

    def merge(self, lead_id: str, user_id: str) -> None:
        """Merge a lead into a user: the lead answers 404; its events appear on the user."""
        with self.lock:
            lead = self.contact_position(lead_id)
            user = self.contact_position(user_id)
            if lead == user:
                raise ApiError(400, "parameter_invalid", "cannot merge a contact into itself")
            self.contacts.state[lead] = "merged"
            self.contacts.live[lead] = False
            self.merged_into[lead] = user
            self.touch(user)

    # ---- companies --------------------------------------------------------------------------

    def contact_companies(self, i: int) -> list[dict]:
        """Companies contact `i` belongs to."""
        company = int(self.contacts.company[i])
        if 0 <= company < len(self.companies):
            return [self.companies[company]]
        return []

    # ---- Stripe -----------------------------------------------------------------------------

    def stripe_add(self, kind: str, fields: dict) -> dict:
        """Store a Stripe object of `kind` given the fields that differ from the template."""
        with self.lock:
            self.stripe[kind].add(fields)
            return fields

    def stripe_render(self, kind: str, obj: dict) -> dict:
        """A stored Stripe object in full: the fixture's fields overlaid with the object's."""
        if obj.get("deleted"):
            return dict(obj)
        if "_ref" in obj:
            # An event recorded at load time: its object is rendered as it is now.
            ref_kind, ref_id = obj["_ref"]
            event = {k: v for k, v in obj.items() if k != "_ref"}
            event["data"] = {
                "object": self.stripe_render(ref_kind, self.stripe[ref_kind].get(ref_id))
            }
            return event
        # A shallow merge: nested values are shared, and answers are serialised right away.
        if "_template" in obj:
            rendered = {**self._templates[obj["_template"]], **obj}
            del rendered["_template"]
            return rendered
        return {**self._templates[STRIPE_OBJECT[kind]], **obj}

    def stripe_event(
        self, event_type: str, kind: str, obj: dict, previous: dict | None = None
    ) -> dict:
        """Record a Stripe event carrying a snapshot of `obj` as it is now."""
        with self.lock:
            snapshot = self.stripe_render(kind, obj)
            event = {
                "id": self.next_id("evt_"),
                "object": "event",
                "type": event_type,
                "created": self.now(),
                "api_version": "2025-03-31.basil",
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": snapshot},
            }
            if previous:
                event["data"]["previous_attributes"] = previous
            self.stripe["events"].add(event)
            return event

    def stripe_list(
        self,
        kind: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        created: dict[str, int],
        match: Any = None,
    ) -> tuple[list[dict], bool]:
        """One page of a Stripe list, newest first, with `has_more`.

        `created` holds the `gte`/`gt`/`lte`/`lt` bounds; `match` filters the stored objects.
        Bounds are found by bisection on `created`, so a page does not scan the table.
        """
        with self.lock:
            table = self.stripe[kind]
            lo, hi = 0, len(table.objects)
            if "gte" in created:
                lo = max(lo, bisect.bisect_left(table.created, created["gte"]))
            if "gt" in created:
                lo = max(lo, bisect.bisect_right(table.created, created["gt"]))
            if "lte" in created:
                hi = min(hi, bisect.bisect_right(table.created, created["lte"]))
            if "lt" in created:
                hi = min(hi, bisect.bisect_left(table.created, created["lt"]))
            if kind == "events":
                oldest = self.now() - STRIPE_EVENT_RETENTION_SECONDS
                lo = max(lo, bisect.bisect_left(table.created, oldest))
            wanted = match or (lambda _obj: True)
            removed = self.removed

            def ok(obj: dict) -> bool:
                return obj["id"] not in removed and wanted(obj)

            found: list[dict] = []
            if ending_before is not None:
                anchor = self._anchor(table, ending_before, "ending_before")
                position = max(lo, anchor + 1)
                while position < hi and len(found) <= limit:
                    if ok(table.objects[position]):
                        found.append(table.objects[position])
                    position += 1
                has_more = len(found) > limit
                page = list(reversed(found[:limit]))
                return [self.stripe_render(kind, o) for o in page], has_more
            if starting_after is not None:
                hi = min(hi, self._anchor(table, starting_after, "starting_after"))
            position = hi - 1
            while position >= lo and len(found) <= limit:
                if ok(table.objects[position]):
                    found.append(table.objects[position])
                position -= 1
            return [self.stripe_render(kind, o) for o in found[:limit]], len(found) > limit

    @staticmethod
    def _anchor(table: StripeTable, object_id: str, param: str) -> int:
        position = table.index.get(object_id)
        if position is None:
            raise ApiError(400, "resource_missing", f"No such object: '{object_id}'", param)
        return position

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer: it leaves the lists, a fetch answers `deleted: true`."""
        with self.lock:
            customer = self.stripe["customers"].get(customer_id)
            if customer is None or customer_id in self.deleted_customers:
                raise ApiError(404, "resource_missing", f"No such customer: '{customer_id}'")
            self.deleted_customers.add(customer_id)
            self.stripe_event("customer.deleted", "customers", customer)

    def remove_stripe_object(self, kind: str, object_id: str) -> None:
        """Make an object vanish: gone from lists, 404 on fetch, no event (a purge)."""
        with self.lock:
            if kind not in STRIPE_OBJECT or kind == "events":
                raise ApiError(404, "resource_missing", f"unknown Stripe kind {kind!r}")
            if self.stripe[kind].get(object_id) is None or object_id in self.removed:
                raise ApiError(404, "resource_missing", f"No such object: '{object_id}'")
            self.removed.add(object_id)

    def set_subscription_status(self, subscription_id: str, status: str) -> dict:
        """Change a subscription's status and emit `customer.subscription.updated`."""
        with self.lock:
            subscription = self.stripe["subscriptions"].get(subscription_id)
            if subscription is None:
                raise ApiError(
                    404, "resource_missing", f"No such subscription: '{subscription_id}'"
                )
            previous = {"status": subscription["status"]}
            subscription["status"] = status
            if status == "canceled":
                subscription["canceled_at"] = subscription["ended_at"] = self.now()
            event_type = (
                "customer.subscription.deleted"
                if status == "canceled"
                else "customer.subscription.updated"
            )
            return self.stripe_event(event_type, "subscriptions", subscription, previous)

    # ---- reports ----------------------------------------------------------------------------

    def current_attributes(self) -> dict[str, dict]:
        """Every contact's custom attributes that are set, by contact id."""
        with self.lock:
            return {
                self.contacts.ids[i]: dict(attrs)
                for i, attrs in enumerate(self.contacts.custom)
                if attrs
            }

    def facts(self) -> dict:
        """Counts and settings describing what the store holds now."""
        with self.lock:
            paying = {
                inv["customer"]
                for inv in self.stripe["invoices"].objects
                if inv["status"] == "paid"
                and inv["amount_paid"] > 0
                and inv["customer"] not in self.deleted_customers
            }
            return {
                "dataset": self.dataset,
                "conversion_event": self.conversion_event,
                "clock": self.now(),
                "event_window_days": self.event_window_days,
                "window_start": self.window_start(),
                "contacts": len(self.contacts),
                "live_contacts": self.live_count(),
                "users": int(sum(r == "user" for r in self.contacts.roles)),
                "leads": int(sum(r == "lead" for r in self.contacts.roles)),
                "events": self.event_count(),
                "event_names": list(self.events.names),
                "companies": len(self.companies),
                "stripe": {kind: len(table.objects) for kind, table in self.stripe.items()},
                "deleted_customers": len(self.deleted_customers),
                "customers_with_paid_invoice": len(paying),
                "dirt": len(self.dirt),
                "rejected_rows": len(self.rejected),
                "duplicate_rows": self.duplicate_rows,
            }


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= INT64_MAX


def _fits(kind: str, value: Any) -> bool:
    """Whether a custom attribute value fits the attribute's data type."""
    if kind == "string":
        return isinstance(value, str) and len(value) <= MAX_STRING_LENGTH
    if kind == "integer":
        return _is_integer(value)
    if kind == "float":
        return _is_integer(value) or (isinstance(value, float) and math.isfinite(value))
    if kind == "boolean":
        return isinstance(value, bool)
    # Dates are Unix seconds or ISO 8601 text.
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return _is_integer(value)


def _addressable(items: Iterable[dict], url: str) -> dict:
    data = list(items)
    return {"type": "list", "data": data, "url": url, "total_count": len(data), "has_more": False}


def _builtin_attributes() -> list[dict]:
    """The standard contact attributes every Intercom workspace has (not custom)."""
    builtin: Sequence[tuple[str, str]] = (
        ("name", "string"),
        ("email", "string"),
        ("external_id", "string"),
        ("signed_up_at", "date"),
        ("last_seen_at", "date"),
        ("role", "string"),
    )
    return [
        {
            "type": "data_attribute",
            "id": 1 + k,
            "model": "contact",
            "name": name,
            "full_name": name,
            "label": name.replace("_", " ").capitalize(),
            "description": "",
            "data_type": data_type,
            "api_writable": name not in ("role",),
            "messenger_writable": False,
            "ui_writable": True,
            "custom": False,
            "archived": False,
            "created_at": 1_500_000_000,
            "updated_at": 1_500_000_000,
            "admin_id": "0",
        }
        for k, (name, data_type) in enumerate(builtin)
    ]


def dumps(obj: Any) -> bytes:
    """Compact JSON for the wire."""
    return json.dumps(obj, separators=(",", ":")).encode()
