"""The sandbox's HTTP API: Intercom 2.14 under `/intercom`, Stripe v1 under `/stripe/v1`.

The admin API under `/_sandbox/` needs no vendor token; tests and the demo use it to read what
the sandbox received and to change its state (see sandbox/runner.py for the Python wrapper).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import FaultProfile, RateLimiter, profile
from sandbox.store import STRIPE_OBJECT, ApiError, Store, dumps

log = logging.getLogger(__name__)

INTERCOM_VERSION = "2.14"
# Requests kept in the request record (a benchmark at 20,000 users sends about 25,000).
REQUEST_LOG_LIMIT = 1_000_000
INTERCOM_PER_PAGE_MAX = 150
SCROLL_PAGE_SIZE = 50
EVENTS_PER_PAGE_MAX = 100
CURSOR_LIMIT = 2**31
INT64_MAX = 2**63 - 1
# JSON nested deeper than this is refused before it is parsed (a search query needs 5 levels).
JSON_DEPTH_MAX = 32
SEARCH_FIELDS_NUMERIC = ("updated_at", "last_seen_at", "signed_up_at", "created_at")
SEARCH_FIELDS_TEXT = ("role", "external_id", "email", "id", "name")
HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)


class SandboxState:
    """The store plus the run-time switches the server reads on every request."""

    def __init__(
        self,
        store: Store,
        *,
        intercom_token: str,
        stripe_key: str,
        faults: str | None = None,
        rate_limit_per_minute: int | None = 10_000,
        base_url: str = "",
        strict_intercom_version: bool = False,
    ):
        self.store = store
        self.intercom_token = intercom_token
        self.stripe_key = stripe_key
        self.base_rate_limit = rate_limit_per_minute
        self.base_url = base_url
        self.mutations: list[dict] = []
        self.requests = {"intercom": 0, "stripe": 0}
        # Every vendor request as received and answered, so tests can check what a client
        # sent (the version headers, which scroll page) without trusting its own counters.
        # Bounded, so a sandbox served for days does not grow without end.
        self.request_log: deque[dict] = deque(maxlen=REQUEST_LOG_LIMIT)
        self.strict_intercom_version = strict_intercom_version
        # Objects listed broken by the fault profile: (kind, id) -> the field broken.
        self.stripe_malformed: dict[tuple[str, str], str] = {}
        self._syncs_started = 0
        self.set_faults(faults)

    def set_faults(self, name: str | None, **overrides: Any) -> FaultProfile:
        """Switch the fault profile now; the rate limiters restart with its limit."""
        self.faults = profile(name, **overrides)
        limit = self.faults.rate_limit_per_minute or self.base_rate_limit
        self.intercom_limiter = RateLimiter.per_minute(limit, 10)
        # Stripe counts per second; give it the same budget a second as Intercom's a minute/60.
        stripe_per_second = None if limit is None else max(1, math.ceil(limit / 60))
        self.stripe_limiter = RateLimiter(stripe_per_second, 1)
        self._script_step = {"intercom": 0, "stripe": 0}
        self._storm_seen = 0
        self._random = random.Random(self.faults.seed)
        self._syncs_started = 0
        self._scroll_pages = 0
        self._malformed_served: set[str] = set()
        return self.faults

    def malformed(self, kind: str, position: int) -> bool:
        """Whether the profile serves this contact (or its newest event) malformed."""
        every = self.faults.malformed_every
        if every is None:
            return False
        # Contacts and events pick different contacts: a quarantined contact's events are
        # never asked for.
        shift = 1 if kind == "contact" else 0
        return (position + shift) % every == 0

    def record_malformed(self, kind: str, contact_id: str, detail: dict) -> None:
        """List a malformed record once in the mutations, the first time it is served."""
        key = f"{kind}:{contact_id}"
        if key not in self._malformed_served:
            self._malformed_served.add(key)
            self.mutations.append({"kind": f"malformed_{kind}", "contact": contact_id, **detail})

    def script_step(self, vendor: str) -> str:
        """The next step of the profile's scripted answers for this vendor."""
        script = self.faults.intercom_script if vendor == "intercom" else self.faults.stripe_script
        if not script:
            return "ok"
        step = script[self._script_step[vendor] % len(script)]
        self._script_step[vendor] += 1
        return step


# ---- answers --------------------------------------------------------------------------------


def _request_id() -> str:
    return uuid.uuid4().hex[:20]


def intercom_error(status: int, code: str, message: str, field: str | None = None) -> Response:
    """Intercom's `error.list` body."""
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    body = {"type": "error.list", "request_id": _request_id(), "errors": [error]}
    return Response(dumps(body), status, media_type="application/json")


def stripe_error(
    status: int,
    error_type: str,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict | None = None,
) -> Response:
    """Stripe's `{"error": {...}}` body."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    headers = {"Request-Id": f"req_{_request_id()}", **(headers or {})}
    return Response(dumps({"error": error}), status, headers, media_type="application/json")


def ok(body: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(dumps(body), status, media_type="application/json")


def _encode_cursor(page: int, position: int) -> str:
    return base64.urlsafe_b64encode(f"{page}:{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> tuple[int, int]:
    invalid = ApiError(400, "parameter_invalid", "starting_after is invalid", "starting_after")
    if not isinstance(cursor, str):
        raise invalid
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        page, _, position = base64.urlsafe_b64decode(padded).decode().partition(":")
        numbers = int(page), int(position)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid from error
    # Only cursors this server wrote are valid: both numbers are small and not negative.
    if not all(0 <= n < CURSOR_LIMIT for n in numbers):
        raise invalid
    return numbers


def _int_param(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool | float | list | dict):
        # JSON bodies: 1.5 or true are not integers, though int() would take them.
        raise ApiError(400, "parameter_invalid", f"{name} must be an integer", name)
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise ApiError(400, "parameter_invalid", f"{name} must be an integer", name) from error
    if not low <= number <= high:
        raise ApiError(400, "parameter_invalid", f"{name} must be between {low} and {high}", name)
    return number


# ---- Intercom -------------------------------------------------------------------------------


def _contacts_page(
    state: SandboxState, positions: np.ndarray, per_page: int, starting_after: str | None
) -> dict:
    """One cursor page over the given contact positions (ascending)."""
    page, after = (0, -1) if not starting_after else _decode_cursor(starting_after)
    start = int(np.searchsorted(positions, after, side="right"))
    chunk = positions[start : start + per_page]
    total = len(positions)
    body: dict[str, Any] = {
        "type": "list",
        "data": [_render_contact(state, int(i)) for i in chunk],
        "total_count": total,
        "pages": {
            "type": "pages",
            "page": page + 1,
            "per_page": per_page,
            "total_pages": max(1, math.ceil(total / per_page)),
        },
    }
    if start + per_page < total and len(chunk):
        overlap = min(state.faults.duplicate_overlap, len(chunk) - 1)
        last = int(chunk[-1 - overlap])
        body["pages"]["next"] = {
            "page": page + 2,
            "per_page": per_page,
            "starting_after": _encode_cursor(page + 1, last),
        }
    return body


def _render_contact(state: SandboxState, i: int) -> dict:
    contact = state.store.render_contact(i)
    if state.malformed("contact", i):
        # A date where Unix seconds belong, as a misbehaving integration might write it.
        contact["updated_at"] = "2024-03-01T12:00:00Z"
        state.record_malformed("contact", contact["id"], {"updated_at": contact["updated_at"]})
    return contact


def _sync_hooks(state: SandboxState, starting_after: str | None) -> None:
    """Churn between syncs and writes during one, when the profile asks for them."""
    if not starting_after:
        state._syncs_started += 1
        if state.faults.churn and state._syncs_started > 1:
            _churn(state)
    elif state.faults.live_writes:
        _, after = _decode_cursor(starting_after)
        store = state.store
        listed = np.flatnonzero(store.contacts.live[: after + 1])
        if len(listed) >= 2:
            now = store.now()
            first, second = int(listed[0]), int(listed[len(listed) // 2])
            store.add_event(
                {"id": store.contacts.ids[first], "event_name": "live_write", "created_at": now}
            )
            store.contacts.custom[second]["sandbox_note"] = f"updated at {now}"
            store.touch(second)
            state.mutations.append(
                {"kind": "live_write", "contacts": [store.contacts.ids[i] for i in (first, second)]}
            )


def _churn(state: SandboxState) -> None:
    store = state.store
    c = store.contacts
    live = np.flatnonzero(c.live)
    leads = [int(i) for i in live if c.roles[i] == "lead"]
    users = [int(i) for i in live if c.roles[i] == "user"]
    if leads and users:
        lead, user = leads[0], users[-1]
        c.emails[lead] = c.emails[user]
        store.merge(c.ids[lead], c.ids[user])
        state.mutations.append({"kind": "merged", "lead": c.ids[lead], "user": c.ids[user]})
    for kind, i in (("archived", users[0] if users else None), ("deleted", users[1:2])):
        position = i if isinstance(i, int) else (i[0] if i else None)
        if position is not None and c.live[position]:
            store.set_contact_state(c.ids[position], kind)
            state.mutations.append({"kind": kind, "contact": c.ids[position]})
    for customer in reversed(store.stripe["customers"].objects):
        if customer["id"] not in store.deleted_customers:
            store.delete_customer(customer["id"])
            state.mutations.append({"kind": "customer_deleted", "customer": customer["id"]})
            break


async def list_contacts(state: SandboxState, request: Request) -> Response:
    """`GET /contacts`."""
    q = request.query_params
    per_page = _int_param(q.get("per_page"), "per_page", 50, 1, INTERCOM_PER_PAGE_MAX)
    starting_after = q.get("starting_after")
    with state.store.lock:
        _sync_hooks(state, starting_after)
        positions = np.flatnonzero(state.store.contacts.live)
        return ok(_contacts_page(state, positions, per_page, starting_after))


def _search_mask(store: Store, query: dict, depth: int = 0) -> np.ndarray:
    if not isinstance(query, dict):
        raise ApiError(400, "parameter_invalid", "query must be an object")
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        if depth >= 2:
            raise ApiError(400, "parameter_invalid", "queries may be nested at most twice")
        parts = query.get("value")
        if not isinstance(parts, list) or not parts:
            raise ApiError(400, "parameter_invalid", f"{operator} needs a list of queries")
        if len(parts) > 15:
            raise ApiError(400, "parameter_invalid", "at most 15 filters in a group")
        masks = [_search_mask(store, part, depth + 1) for part in parts]
        combine = np.logical_and if operator == "AND" else np.logical_or
        return combine.reduce(masks)
    name, value = query.get("field"), query.get("value")
    c = store.contacts
    if not isinstance(name, str):
        raise ApiError(400, "parameter_invalid", "field must be a string", "query")
    if name in SEARCH_FIELDS_NUMERIC:
        tests = {
            "=": np.equal,
            "!=": np.not_equal,
            ">": np.greater,
            "<": np.less,
            "IN": np.isin,
            "NIN": lambda col, values: ~np.isin(col, values),
        }
        if operator not in tests:
            raise ApiError(400, "parameter_invalid", f"operator {operator!r} on {name}", "query")
        column = getattr(c, name).astype(np.float64)
        column = np.where(column < 0, np.nan, column)
        if operator in ("IN", "NIN"):
            if not isinstance(value, list) or not value:
                raise ApiError(400, "parameter_invalid", f"{operator} needs a list", "query")
            values: Any = [_search_number(name, v) for v in value]
        else:
            values = _search_number(name, value)
        with np.errstate(invalid="ignore"):
            return np.asarray(tests[operator](column, values))
    if name in SEARCH_FIELDS_TEXT:
        column = np.array(
            getattr(c, "ids" if name == "id" else f"{name}s" if name != "role" else "roles"),
            dtype=object,
        )
        if name == "external_id":
            column = np.array(c.external_ids, dtype=object)
        text = column.astype(str)
        present = np.array([v is not None for v in column])
        if operator in ("IN", "NIN"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ApiError(
                    400, "parameter_invalid", f"{operator} on {name} needs a list of strings"
                )
        elif not isinstance(value, str) and not (value is None and operator in ("=", "!=")):
            raise ApiError(400, "parameter_invalid", f"{name} {operator} needs a string", "query")
        value_list = value if isinstance(value, list) else [value]
        if operator == "=":
            return (text == str(value)) & present if value is not None else ~present
        if operator == "!=":
            return (text != str(value)) | ~present if value is not None else present
        if operator == "IN":
            return np.isin(text, [str(v) for v in value_list]) & present
        if operator == "NIN":
            return ~(np.isin(text, [str(v) for v in value_list]) & present)
        funcs = {"~": "__contains__", "^": "startswith", "$": "endswith"}
        if operator in funcs or operator == "!~":
            method = funcs.get(operator, "__contains__")
            hit = np.array([getattr(t, method)(str(value)) for t in text]) & present
            return ~hit if operator == "!~" else hit
        raise ApiError(400, "parameter_invalid", f"operator {operator!r} on {name}")
    raise ApiError(400, "parameter_invalid", f"field {name!r} is not searchable", "query")


def _search_number(name: str, value: Any) -> float:
    """A search value for a timestamp field: a number, or text holding one, that is finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, "parameter_invalid", f"{name} needs a number", "query")
    try:
        number = float(value)
    except (ValueError, OverflowError) as error:
        raise ApiError(400, "parameter_invalid", f"{name} needs a number", "query") from error
    if not math.isfinite(number) or abs(number) > INT64_MAX:
        raise ApiError(400, "parameter_invalid", f"{name} is out of range", "query")
    return number


async def search_contacts(state: SandboxState, request: Request) -> Response:
    """`POST /contacts/search`: filters, AND/OR groups, the cursor in the body."""
    body = await _json_body(request)
    pagination = body.get("pagination") or {}
    if not isinstance(pagination, dict):
        raise ApiError(400, "parameter_invalid", "pagination must be an object", "pagination")
    per_page = _int_param(pagination.get("per_page"), "per_page", 50, 1, INTERCOM_PER_PAGE_MAX)
    starting_after = pagination.get("starting_after")
    if "query" not in body:
        raise ApiError(400, "parameter_not_found", "query is required", "query")
    with state.store.lock:
        _sync_hooks(state, starting_after)
        mask = _search_mask(state.store, body["query"]) & state.store.contacts.live
        positions = np.flatnonzero(mask)
        return ok(_contacts_page(state, positions, per_page, starting_after))


async def get_contact(state: SandboxState, request: Request) -> Response:
    """`GET /contacts/{id}`."""
    with state.store.lock:
        i = state.store.contact_position(request.path_params["contact_id"])
        return ok(_render_contact(state, i))


async def find_by_external_id(state: SandboxState, request: Request) -> Response:
    """`GET /contacts/find_by_external_id/{external_id}`."""
    with state.store.lock:
        i = state.store.find_by_external_id(request.path_params["external_id"])
        return ok(_render_contact(state, i))


async def update_contact(state: SandboxState, request: Request) -> Response:
    """`PUT /contacts/{id}`."""
    body = await _json_body(request)
    return ok(state.store.update_contact(request.path_params["contact_id"], body))


async def contact_companies(state: SandboxState, request: Request) -> Response:
    """`GET /contacts/{id}/companies`."""
    with state.store.lock:
        i = state.store.contact_position(request.path_params["contact_id"])
        companies = [] if state.faults.no_companies else state.store.contact_companies(i)
        return ok(
            {
                "type": "list",
                "companies": companies,
                "total_count": len(companies),
                "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1},
            }
        )


async def list_data_attributes(state: SandboxState, request: Request) -> Response:
    """`GET /data_attributes?model=contact`."""
    model = request.query_params.get("model")
    include_archived = request.query_params.get("include_archived") == "true"
    data = [
        a
        for a in state.store.data_attributes
        if (model is None or a["model"] == model) and (include_archived or not a["archived"])
    ]
    return ok({"type": "list", "data": data})


async def create_data_attribute(state: SandboxState, request: Request) -> Response:
    """`POST /data_attributes`."""
    return ok(state.store.create_data_attribute(await _json_body(request)))


async def scroll_companies(state: SandboxState, request: Request) -> Response:
    """`GET /companies/scroll`: one scroll per app; the same `scroll_param` on every page."""
    store, faults = state.store, state.faults
    param = request.query_params.get("scroll_param")
    now = time.time()
    with store.lock:
        scroll = store.scroll
        if scroll is not None and now - scroll["used_at"] > faults.scroll_idle_seconds:
            store.scroll = scroll = None
        if not param:
            if scroll is not None:
                return intercom_error(
                    400, "scroll_exists", "scroll already exists for this workspace"
                )
            scroll = store.scroll = {
                "param": uuid.uuid4().hex,
                "position": 0,
                "pages": 0,
                "used_at": now,
                "alive": True,
            }
        elif scroll is None or scroll["param"] != param or not scroll["alive"]:
            return intercom_error(404, "not_found", "scroll parameter not found")
        scroll["used_at"] = now
        scroll["pages"] += 1
        if faults.scroll_5xx_on_page is not None and scroll["pages"] == faults.scroll_5xx_on_page:
            # The scroll's server-side state is lost: a retry of this page finds nothing.
            scroll["position"] = len(store.companies)
            return intercom_error(500, "server_error", "internal server error")
        companies = [] if faults.no_companies else store.companies
        chunk = companies[scroll["position"] : scroll["position"] + SCROLL_PAGE_SIZE]
        request.state.sandbox_note = {
            "scroll_param": scroll["param"],
            "from_position": scroll["position"],
            "served": [c["id"] for c in chunk],
        }
        scroll["position"] += len(chunk)
        if (
            faults.scroll_expire_after_pages is not None
            and scroll["pages"] >= faults.scroll_expire_after_pages
        ):
            # As if the reader paused: the parameter is gone, the lock holds until idle expiry.
            scroll["alive"] = False
        if not chunk and scroll["alive"]:
            # An empty page ends the scroll; a new one may start.
            store.scroll = None
        return ok(
            {
                "type": "list",
                "data": chunk,
                "pages": None,
                "total_count": None,
                "scroll_param": scroll["param"],
            }
        )


async def list_events(state: SandboxState, request: Request) -> Response:
    """`GET /events?type=user&intercom_user_id=...`: one contact's events, newest first."""
    q = request.query_params
    store = state.store
    if q.get("type") != "user":
        raise ApiError(400, "parameter_invalid", "type must be user", "type")
    per_page = _int_param(q.get("per_page"), "per_page", 50, 1, EVENTS_PER_PAGE_MAX)
    offset = _int_param(q.get("offset"), "offset", 0, 0, 10**12)
    with store.lock:
        if q.get("intercom_user_id"):
            i = store.contact_position(q["intercom_user_id"])
        elif q.get("user_id"):
            i = store.find_by_external_id(q["user_id"])
        elif q.get("email"):
            matches = [
                k
                for k, em in enumerate(store.contacts.emails)
                if em == q["email"] and store.contacts.live[k]
            ]
            if not matches:
                raise ApiError(404, "not_found", "User Not Found")
            i = matches[0]
        else:
            raise ApiError(
                400, "parameter_not_found", "intercom_user_id, user_id or email is required"
            )
        rows = store.contact_events(i)
        cid, ext, email = store.contacts.ids[i], store.contacts.external_ids[i], store.contacts
        email = store.contacts.emails[i] or ""
        chunk = rows[offset : offset + per_page]
        body: dict[str, Any] = {
            "type": "event.list",
            "events": [
                {
                    "type": "event",
                    "id": event_id,
                    "event_name": name,
                    "created_at": created,
                    "user_id": ext,
                    "intercom_user_id": cid,
                    "email": email,
                    "metadata": metadata,
                }
                for name, created, metadata, event_id in chunk
            ],
            "pages": {},
        }
        if offset == 0 and body["events"] and state.malformed("event", i):
            broken = body["events"][0]
            del broken["event_name"]
            state.record_malformed("event", cid, {"event": broken["id"]})
        if offset + per_page < len(rows):
            params = {k: v for k, v in q.items() if k != "offset"}
            params["offset"] = str(offset + per_page)
            body["pages"]["next"] = f"{state.base_url}/intercom/events?{urlencode(params)}"
        return ok(body)


async def post_event(state: SandboxState, request: Request) -> Response:
    """`POST /events`: 202 with no body."""
    state.store.add_event(await _json_body(request))
    return Response(b"", 202)


# ---- Stripe ---------------------------------------------------------------------------------


def _stripe_integer(value: str, param: str) -> int:
    try:
        number = int(value)
    except ValueError as error:
        raise ApiError(
            400, "parameter_invalid_integer", f"Invalid integer: {value}", param
        ) from error
    if not -INT64_MAX <= number <= INT64_MAX:
        raise ApiError(400, "parameter_invalid_integer", f"Invalid integer: {value}", param)
    return number


def _stripe_created(params: Any) -> dict[str, int]:
    bounds = {}
    for key in params:
        if key.startswith("created[") and key[8:-1] not in ("gte", "gt", "lte", "lt"):
            raise ApiError(400, "parameter_unknown", f"Received unknown parameter: {key}", key)
    for op in ("gte", "gt", "lte", "lt"):
        value = params.get(f"created[{op}]")
        if value is not None:
            bounds[op] = _stripe_integer(value, f"created[{op}]")
    if params.get("created") is not None:
        bounds["gte"] = bounds["lte"] = _stripe_integer(params["created"], "created")
    return bounds


def _stripe_match(kind: str, params: Any, store: Store) -> Callable[[dict], bool]:
    customer = params.get("customer")
    status = params.get("status")
    tests: list[Callable[[dict], bool]] = []
    if kind == "customers":
        tests.append(lambda o: o["id"] not in store.deleted_customers)
        if params.get("email") is not None:
            tests.append(lambda o: o.get("email") == params["email"])
    if customer is not None and kind != "customers":
        tests.append(lambda o: o.get("customer") == customer)
    if kind == "subscriptions":
        if status is None:
            tests.append(lambda o: o["status"] not in ("canceled", "incomplete_expired"))
        elif status != "all":
            tests.append(lambda o: o["status"] == status)
    if kind == "invoices" and status is not None:
        tests.append(lambda o: o["status"] == status)
    if kind == "refunds" and params.get("charge") is not None:
        tests.append(lambda o: o.get("charge") == params["charge"])
    if kind == "events":
        types = params.getlist("types[]") if hasattr(params, "getlist") else []
        if params.get("type") is not None:
            wanted = params["type"]
            if wanted.endswith("*"):
                tests.append(lambda o: o["type"].startswith(wanted[:-1]))
            else:
                tests.append(lambda o: o["type"] == wanted)
        if types:
            tests.append(lambda o: o["type"] in types)
    return lambda obj: all(test(obj) for test in tests)


def stripe_list_endpoint(kind: str) -> Callable[[SandboxState, Request], Awaitable[Response]]:
    """A Stripe list endpoint for one kind of object."""

    async def endpoint(state: SandboxState, request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 100:
            raise ApiError(400, "parameter_invalid_integer", "limit must be 1 to 100", "limit")
        data, has_more = state.store.stripe_list(
            kind,
            limit=limit,
            starting_after=q.get("starting_after"),
            ending_before=q.get("ending_before"),
            created=_stripe_created(q),
            match=_stripe_match(kind, q, state.store),
        )
        if state.faults.stripe_malformed_every and kind != "events":
            data = _malformed(state, kind, data)
        return ok({"object": "list", "url": f"/v1/{kind}", "has_more": has_more, "data": data})

    return endpoint


def _malformed(state: SandboxState, kind: str, data: list[dict]) -> list[dict]:
    """The page with every n-th stored object broken (see `FaultProfile`), each one recorded."""
    every = state.faults.stripe_malformed_every
    table = state.store.stripe[kind]
    page = []
    for k, obj in enumerate(data):
        turn, rest = divmod(table.index[obj["id"]] + 1, every)
        if rest:
            page.append(obj)
            continue
        if turn % 2 and k < len(data) - 1:
            state.stripe_malformed[kind, obj["id"]] = "id"
            page.append({key: value for key, value in obj.items() if key != "id"})
        else:
            state.stripe_malformed[kind, obj["id"]] = "created"
            text = datetime.fromtimestamp(obj["created"], UTC).isoformat()
            page.append(obj | {"created": text})
    return page


def stripe_get_endpoint(kind: str) -> Callable[[SandboxState, Request], Awaitable[Response]]:
    """A Stripe retrieve endpoint for one kind of object."""

    async def endpoint(state: SandboxState, request: Request) -> Response:
        object_id = request.path_params["object_id"]
        store = state.store
        with store.lock:
            obj = store.stripe[kind].get(object_id)
            if obj is None or object_id in store.removed:
                raise ApiError(
                    404,
                    "resource_missing",
                    f"No such {STRIPE_OBJECT[kind]}: '{object_id}'",
                    "id",
                )
            if kind == "customers" and object_id in store.deleted_customers:
                return ok({"id": object_id, "object": "customer", "deleted": True})
            return ok(store.stripe_render(kind, obj))

    return endpoint


# ---- dispatch -------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(raw: bytes) -> bool:
    """Whether brackets nest deeper than JSON_DEPTH_MAX (strings included: an upper bound)."""
    depth = deepest = 0
    for byte in raw.translate(None, delete=_NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > JSON_DEPTH_MAX:
            return True
    return False


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    if _too_deep(raw):
        raise ApiError(400, "parameter_invalid", f"body nests deeper than {JSON_DEPTH_MAX}")
    try:
        # NaN and Infinity are not JSON, though Python's parser takes them by default.
        body = json.loads(raw, parse_constant=_no_constant)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, the constants
        raise ApiError(400, "parameter_invalid", f"body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise ApiError(400, "parameter_invalid", "body must be a JSON object")
    return body


def _rate_headers(limit: int, remaining: int, reset: int | None) -> dict[str, str]:
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
    if reset is not None:
        headers["X-RateLimit-Reset"] = str(reset)
    return headers


def vendor_route(
    state: SandboxState,
    vendor: str,
    handler: Callable[[SandboxState, Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a vendor endpoint with auth, the fault profile, rate limits and error bodies."""

    async def endpoint(request: Request) -> Response:
        state.requests[vendor] += 1
        response = await answer(request)
        state.request_log.append(
            {
                "vendor": vendor,
                "method": request.method,
                "path": request.url.path.removeprefix(f"/{vendor}"),
                "query": dict(request.query_params),
                "query_string": request.url.query,
                "intercom_version": request.headers.get("intercom-version"),
                # The API version decides the shape of every answer (invoices moved their
                # subscription in 2025-03-31): what the client pinned, or None.
                "stripe_version": request.headers.get("stripe-version"),
                "status": response.status_code,
                "note": getattr(request.state, "sandbox_note", None),
            }
        )
        return response

    async def answer(request: Request) -> Response:
        faults = state.faults
        expected = state.intercom_token if vendor == "intercom" else state.stripe_key
        if request.headers.get("authorization", "") != f"Bearer {expected}":
            if vendor == "intercom":
                return intercom_error(401, "unauthorized", "Access Token Invalid")
            return stripe_error(
                401, "invalid_request_error", "Invalid API Key provided", "api_key_invalid"
            )
        version = request.headers.get("intercom-version")
        if vendor == "intercom" and state.strict_intercom_version and version != INTERCOM_VERSION:
            return intercom_error(
                400,
                "intercom_version_invalid",
                f"Intercom-Version {version!r} is not served here; send {INTERCOM_VERSION}",
            )
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        now = int(time.time())
        if vendor == "intercom":
            allowed, limit, remaining, reset = state.intercom_limiter.take()
            headers = _rate_headers(limit, remaining, reset) if limit else {}
            if not allowed:
                response = intercom_error(429, "rate_limit_exceeded", "Exceeded rate limit")
                response.headers.update(headers)
                return response
        else:
            allowed, *_ = state.stripe_limiter.take()
            headers = {}
            if not allowed:
                return stripe_error(
                    429,
                    "invalid_request_error",
                    "Too many requests hit the API too quickly.",
                    "rate_limit",
                    headers={"Stripe-Should-Retry": "true"},
                )
        if vendor == "stripe" and _in_storm(state, request):
            return stripe_error(500, "api_error", "An unknown error occurred")
        step = state.script_step(vendor)
        scripted = _scripted(step, now, headers)
        if scripted is not None:
            return scripted
        if faults.error_share and state._random.random() < faults.error_share:
            if state._random.random() < 0.5:
                return Response(HTML_503, 503, media_type="text/html")
            if vendor == "intercom":
                return intercom_error(500, "server_error", "internal server error")
            return stripe_error(500, "api_error", "An unknown error occurred")
        try:
            response = await handler(state, request)
        except ApiError as error:
            response = _vendor_error(vendor, error)
        except Exception:  # a sandbox bug still answers in the vendor's shape, and is logged
            log.exception("sandbox: %s %s failed", request.method, request.url.path)
            response = _vendor_error(vendor, ApiError(500, "server_error", "internal error"))
        if step == "ok_remaining_1":
            headers = _rate_headers(max(limit, 2), 1, now + faults.rate_limit_reset_seconds)
        response.headers.update(headers)
        return response

    return endpoint


def _in_storm(state: SandboxState, request: Request) -> bool:
    """Whether this Stripe request falls in the fault profile's 5xx storm."""
    faults = state.faults
    path = request.url.path.removeprefix("/stripe")
    if faults.stripe_storm_after is None or not path.startswith(faults.stripe_storm_path):
        return False
    state._storm_seen += 1
    return state._storm_seen > faults.stripe_storm_after


def _vendor_error(vendor: str, error: ApiError) -> Response:
    """An ApiError in the vendor's error body."""
    if vendor == "intercom":
        return intercom_error(error.status, error.code, error.message, error.field)
    error_type = "api_error" if error.status >= 500 else "invalid_request_error"
    return stripe_error(error.status, error_type, error.message, error.code, error.field)


async def _unrouted(request: Request, exc: Exception) -> Response:
    """404 and 405 in the vendor's error body, by the path's prefix."""
    status = getattr(exc, "status_code", 404)
    path, method = request.url.path, request.method
    if path.startswith("/intercom/"):
        code = "not_found" if status == 404 else "method_not_allowed"
        return intercom_error(status, code, f"{method} {path.removeprefix('/intercom')} is unknown")
    if path.startswith("/stripe/"):
        message = f"Unrecognized request URL ({method}: {path.removeprefix('/stripe')})."
        return stripe_error(status, "invalid_request_error", message)
    return JSONResponse({"error": f"{method} {path} is unknown"}, status)


def _scripted(step: str, now: int, headers: dict[str, str]) -> Response | None:
    if step == "429_reset_past":
        response = intercom_error(429, "rate_limit_exceeded", "Exceeded rate limit")
        response.headers.update(_rate_headers(1666, 0, now - 5))
        return response
    if step == "429_no_reset":
        response = intercom_error(429, "rate_limit_exceeded", "Exceeded rate limit")
        response.headers.update(_rate_headers(1666, 0, None))
        return response
    if step == "503_html":
        return Response(HTML_503, 503, media_type="text/html")
    if step == "500_json":
        return intercom_error(500, "server_error", "internal server error")
    if step == "429_lock_timeout":
        return stripe_error(
            429,
            "invalid_request_error",
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it.",
            "lock_timeout",
            headers={"Stripe-Should-Retry": "true"},
        )
    if step == "429_rate_limit":
        return stripe_error(
            429,
            "invalid_request_error",
            "Too many requests hit the API too quickly.",
            "rate_limit",
            headers={"Retry-After": "2", "Stripe-Should-Retry": "true"},
        )
    if step == "500_api_error":
        return stripe_error(500, "api_error", "An unknown error occurred")
    return None


# ---- admin ----------------------------------------------------------------------------------


def admin_routes(state: SandboxState) -> list[Route]:
    """The `/_sandbox/` routes: reports and mutations, no vendor auth."""
    store = state.store

    def guarded(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = await fn(request)
            except ApiError as error:
                return JSONResponse({"error": error.message}, error.status)
            except (ValueError, KeyError, TypeError) as error:
                return JSONResponse({"error": str(error)}, 400)
            return result if isinstance(result, Response) else ok(result)

        return endpoint

    async def facts(_: Request) -> dict:
        return {**store.facts(), "faults": state.faults.name, "requests": dict(state.requests)}

    async def writes(_: Request) -> list:
        with store.lock:
            return list(store.writes)

    async def attributes(_: Request) -> dict:
        return store.current_attributes()

    async def dirt(_: Request) -> list:
        return list(store.dirt)

    async def mutations(_: Request) -> list:
        return list(state.mutations)

    async def rejected(_: Request) -> list:
        return list(store.rejected)

    async def requests(_: Request) -> list:
        return list(state.request_log)

    async def stripe_requests(_: Request) -> list:
        # Stripe's view keeps the query as sent, for comparing cursors byte for byte.
        return [
            {**r, "query": r["query_string"]} for r in state.request_log if r["vendor"] == "stripe"
        ]

    async def malformed(_: Request) -> list:
        return [{"kind": k, "id": i, "field": f} for (k, i), f in state.stripe_malformed.items()]

    async def add_event(request: Request) -> dict:
        body = await _json_body(request)
        store.add_event(body)
        state.mutations.append({"kind": "event", **body})
        return {"ok": True}

    async def merge(request: Request) -> dict:
        body = await _json_body(request)
        missing = [key for key in ("lead_id", "user_id") if not isinstance(body.get(key), str)]
        if missing:
            raise ApiError(400, "parameter_not_found", f"{' and '.join(missing)} required")
        store.merge(body["lead_id"], body["user_id"])
        state.mutations.append({"kind": "merged", "lead": body["lead_id"], "user": body["user_id"]})
        return {"ok": True}

    async def contact_state(request: Request) -> dict:
        contact_id, action = request.path_params["contact_id"], request.path_params["action"]
        if action not in ("archive", "delete"):
            raise ApiError(404, "not_found", f"unknown action {action}")
        kind = "archived" if action == "archive" else "deleted"
        store.set_contact_state(contact_id, kind)
        state.mutations.append({"kind": kind, "contact": contact_id})
        return {"ok": True}

    async def delete_customer(request: Request) -> dict:
        customer_id = request.path_params["customer_id"]
        store.delete_customer(customer_id)
        state.mutations.append({"kind": "customer_deleted", "customer": customer_id})
        return {"ok": True}

    async def remove_stripe_object(request: Request) -> dict:
        kind, object_id = request.path_params["kind"], request.path_params["object_id"]
        store.remove_stripe_object(kind, object_id)
        state.mutations.append({"kind": "stripe_removed", "object": kind, "id": object_id})
        return {"ok": True}

    async def subscription_status(request: Request) -> dict:
        body = await _json_body(request)
        event = store.set_subscription_status(request.path_params["sub_id"], body["status"])
        state.mutations.append(
            {"kind": "subscription_status", "subscription": request.path_params["sub_id"]}
        )
        return event

    async def clock(request: Request) -> dict:
        body = await _json_body(request)
        return {"clock": store.advance_clock(body.get("advance_seconds", 0))}

    async def faults(request: Request) -> dict:
        body = await _json_body(request)
        overrides = body.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ApiError(400, "parameter_invalid", "overrides must be an object")
        chosen = state.set_faults(body.get("profile"), **overrides)
        return asdict(chosen)

    routes = [
        ("/facts", facts, "GET"),
        ("/writes", writes, "GET"),
        ("/attributes", attributes, "GET"),
        ("/dirt", dirt, "GET"),
        ("/mutations", mutations, "GET"),
        ("/rejected", rejected, "GET"),
        ("/requests", requests, "GET"),
        ("/stripe/requests", stripe_requests, "GET"),
        ("/stripe/malformed", malformed, "GET"),
        ("/events", add_event, "POST"),
        ("/merge", merge, "POST"),
        ("/contacts/{contact_id}/{action}", contact_state, "POST"),
        ("/stripe/customers/{customer_id}/delete", delete_customer, "POST"),
        ("/stripe/subscriptions/{sub_id}/status", subscription_status, "POST"),
        ("/stripe/{kind}/{object_id}/remove", remove_stripe_object, "POST"),
        ("/clock", clock, "POST"),
        ("/faults", faults, "POST"),
    ]
    return [Route(f"/_sandbox{path}", guarded(fn), methods=[m]) for path, fn, m in routes]


def create_app(state: SandboxState) -> Starlette:
    """The Starlette app serving both vendors and the admin API for one sandbox state."""
    intercom = [
        ("/contacts", list_contacts, "GET"),
        ("/contacts/search", search_contacts, "POST"),
        ("/contacts/find_by_external_id/{external_id:path}", find_by_external_id, "GET"),
        ("/contacts/{contact_id}/companies", contact_companies, "GET"),
        ("/contacts/{contact_id}", get_contact, "GET"),
        ("/contacts/{contact_id}", update_contact, "PUT"),
        ("/data_attributes", list_data_attributes, "GET"),
        ("/data_attributes", create_data_attribute, "POST"),
        ("/companies/scroll", scroll_companies, "GET"),
        ("/events", list_events, "GET"),
        ("/events", post_event, "POST"),
    ]
    routes = [
        Route(f"/intercom{path}", vendor_route(state, "intercom", fn), methods=[method])
        for path, fn, method in intercom
    ]
    for kind in STRIPE_OBJECT:
        routes.append(
            Route(
                f"/stripe/v1/{kind}",
                vendor_route(state, "stripe", stripe_list_endpoint(kind)),
                methods=["GET"],
            )
        )
        routes.append(
            Route(
                f"/stripe/v1/{kind}/{{object_id}}",
                vendor_route(state, "stripe", stripe_get_endpoint(kind)),
                methods=["GET"],
            )
        )
    routes += admin_routes(state)
    return Starlette(routes=routes, exception_handlers={404: _unrouted, 405: _unrouted})
