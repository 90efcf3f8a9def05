"""Intercom REST API 2.14 over httpx: retries, rate limiting and pagination in one place.

`IntercomClient` is synchronous (one `httpx.Client`); `AsyncIntercomClient` has the same
`request()` as a coroutine for bounded-concurrency reads and writes. Both:

- send `Intercom-Version: 2.14` and the bearer token;
- throttle before the `X-RateLimit-Remaining` budget runs out, waiting for `X-RateLimit-Reset`;
- retry 429, 5xx and connection errors with tenacity: on 429 they wait `max(0, reset - now)`
  plus jitter (capped), and back off exponentially with jitter when the header is missing;
- fail at once on any other 4xx, with the status, Intercom's error code, message and request id;
- never assume an error body is JSON (a 5xx may answer HTML).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
import tenacity

from orchestration.clients.retrying import (
    ClientStats,
    RateBudget,
    RetryableError,
    ServerClock,
    backoff_wait,
    parse_int_header,
    wait_for_reset,
)

log = logging.getLogger(__name__)

INTERCOM_VERSION = "2.14"
MAX_PER_PAGE = 150
# The events list takes at most 100 a page (contacts take 150).
MAX_EVENTS_PER_PAGE = 100


class IntercomError(Exception):
    """An Intercom request that failed for good.

    Attributes:
        status: HTTP status, or None when no answer came.
        code: Intercom's error code (`not_found`, `parameter_invalid`, ...), when given.
        message: Intercom's message, or the start of a body that was not an error list.
        request_id: Intercom's request id, for their support.
        method: HTTP method of the request.
        path: Path (or URL) of the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.method = method
        self.path = path
        where = f"{method} {path}".strip()
        parts = [f"Intercom {where} failed"]
        if status is not None:
            parts.append(f"with {status}")
        if code:
            parts.append(f"({code})")
        text = " ".join(parts) + f": {message}"
        if request_id:
            text += f" [request_id {request_id}]"
        super().__init__(text)


class IntercomBadRequest(IntercomError):
    """400: the request itself is wrong (bad parameter, existing attribute, open scroll)."""


class IntercomNotFound(IntercomError):
    """404: the object does not exist (deleted, merged, archived) or a scroll expired."""


class IntercomRateLimited(IntercomError, RetryableError):
    """429 after every retry was spent."""


class IntercomServerError(IntercomError, RetryableError):
    """5xx after every retry was spent."""


class IntercomConnectionError(IntercomError, RetryableError):
    """No usable answer after every retry was spent: refused, reset, timed out, or undecodable."""


def error_from_response(response: httpx.Response, *, now: float | None = None) -> IntercomError:
    """The error a non-2xx answer stands for, parsed without assuming the body is JSON."""
    method = response.request.method if response.request else ""
    path = response.request.url.path if response.request else ""
    code = request_id = None
    message = ""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        request_id = body.get("request_id")
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        elif "message" in body:
            message = str(body["message"])
    if not message:
        text = response.text.strip().replace("\n", " ")
        message = text[:200] if text else response.reason_phrase or "no body"
    request_id = request_id or response.headers.get("X-Request-Id")
    status = response.status_code
    fields = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "method": method,
        "path": path,
    }
    if status == 429:
        error: IntercomError = IntercomRateLimited(message, **fields)
        reset_at = parse_int_header(response.headers, "X-RateLimit-Reset")
        error.retry_after = wait_for_reset(
            reset_at, time.time() if now is None else now, cap=_RATE_LIMIT_CAP
        )
        return error
    if status >= 500:
        return IntercomServerError(message, **fields)
    if status == 404:
        return IntercomNotFound(message, **fields)
    if status == 400:
        return IntercomBadRequest(message, **fields)
    return IntercomError(message, **fields)


# Upper bound on one rate-limit wait: a reset far in the future is a clock or server problem,
# better met by another attempt than by sleeping for minutes.
_RATE_LIMIT_CAP = 60.0


def _decode(response: httpx.Response) -> dict | None:
    if response.status_code == 202 or not response.content:
        return None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise IntercomError(
            f"answer is not JSON: {response.text[:200]!r}",
            status=response.status_code,
            method=response.request.method,
            path=response.request.url.path,
        ) from exc
    if not isinstance(body, dict):
        # Every answer of the API is an object; anything else is no answer to read from.
        raise IntercomError(
            f"answer is not a JSON object but a {type(body).__name__}: {response.text[:200]!r}",
            status=response.status_code,
            method=response.request.method,
            path=response.request.url.path,
        )
    return body


class _IntercomBase:
    """Settings and decisions shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        *,
        max_attempts: int = 6,
        max_backoff: float = 30.0,
        initial_backoff: float = 0.5,
        rate_limit_cap: float = _RATE_LIMIT_CAP,
        throttle_reserve: int = 2,
    ) -> None:
        if not base_url:
            raise ValueError("Intercom base URL is empty")
        if not token:
            raise ValueError("Intercom access token is empty")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.stats = ClientStats()
        self.budget = RateBudget(reserve=throttle_reserve, cap=rate_limit_cap)
        self.clock = ServerClock()
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Intercom-Version": INTERCOM_VERSION,
            "Accept": "application/json",
        }
        self._wait = backoff_wait(initial=initial_backoff, maximum=max_backoff, cap=rate_limit_cap)

    def _retry_kwargs(self, retry_server_errors: bool = True) -> dict[str, Any]:
        def retryable(error: BaseException) -> bool:
            if isinstance(error, IntercomServerError) and not retry_server_errors:
                return False
            return isinstance(error, RetryableError)

        return {
            "retry": tenacity.retry_if_exception(retryable),
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "wait": self._wait,
            "reraise": True,
            "before_sleep": self._before_sleep,
        }

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        self.stats.record_retry(seconds)
        error = state.outcome.exception() if state.outcome else None
        log.info("retrying in %.2f s after attempt %d: %s", seconds, state.attempt_number, error)

    def _check(self, response: httpx.Response) -> dict | None:
        self.stats.record_response(response.status_code)
        self.budget.release(response.headers)
        self.clock.observe(response.headers)
        if response.is_success:
            return _decode(response)
        raise error_from_response(response)

    def _connection_error(self, method: str, path: str, exc: Exception) -> IntercomError:
        self.stats.record_failure()
        self.budget.release(None)
        return IntercomConnectionError(f"{type(exc).__name__}: {exc}", method=method, path=path)


class IntercomClient(_IntercomBase):
    """Synchronous Intercom client (an `httpx.Client`); use as a context manager or `close()`.

    Args:
        base_url: API host, e.g. `https://api.intercom.io` or the sandbox's URL.
        token: Access token.
        timeout: Seconds per request.
        max_attempts: Attempts per request, the first included, for 429, 5xx and no answer.
        max_backoff: Longest exponential back-off step in seconds.
        initial_backoff: Scale of the exponential back-off in seconds.
        rate_limit_cap: Longest single wait for a rate-limit reset in seconds.
        throttle_reserve: Calls kept in hand: below it, requests wait for the window's reset.
        transport: An httpx transport, for tests.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(base_url, token, timeout, **options)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> IntercomClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        retry_server_errors: bool = True,
    ) -> dict | None:
        """Send one request with throttling and retries; the decoded JSON answer or None (202).

        `retry_server_errors=False` leaves 5xx to the caller, for reads such as a scroll that
        must start over rather than repeat a page.

        Raises:
            IntercomError: A 4xx that cannot succeed (at once), or retries spent on 429, 5xx or
                connection errors (`IntercomRateLimited`, `IntercomServerError`,
                `IntercomConnectionError`).
        """
        for attempt in tenacity.Retrying(**self._retry_kwargs(retry_server_errors)):
            with attempt:
                return self._attempt(method, path, params, json)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _attempt(self, method: str, path: str, params: Any, body: Any) -> dict | None:
        pause = self.budget.acquire()
        if pause > 0:
            self.stats.record_throttle(pause)
            log.info("throttling %.2f s: rate-limit budget nearly spent", pause)
            time.sleep(pause)
        try:
            response = self._http.request(method, path, params=params, json=body)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # DecodingError: a body its Content-Encoding does not fit, as good as no answer.
            raise self._connection_error(method, path, exc) from exc
        return self._check(response)

    # Contacts --------------------------------------------------------------------------------

    def get_contact(self, contact_id: str) -> dict:
        """One contact by Intercom id (`IntercomNotFound` when merged, deleted or archived)."""
        return self.request("GET", contact_path(contact_id)) or {}

    def update_contact(self, contact_id: str, custom_attributes: dict[str, Any]) -> dict:
        """Set custom attributes of one contact; returns the updated contact."""
        body = {"custom_attributes": custom_attributes}
        return self.request("PUT", contact_path(contact_id), json=body) or {}

    def list_contacts(self, per_page: int = MAX_PER_PAGE) -> Iterator[dict]:
        """Every contact, following `pages.next.starting_after` until it is absent."""
        params: dict[str, Any] = {"per_page": per_page}
        followed: set[str] = set()
        while True:
            page = self.request("GET", "/contacts", params=params)
            yield from page_items(page, "data", "GET", "/contacts")
            cursor = next_starting_after(page)
            if cursor is None:
                return
            refuse_repeated(cursor, followed, "GET", "/contacts")
            params = {"per_page": per_page, "starting_after": cursor}

    def search_contacts(self, query: dict, per_page: int = MAX_PER_PAGE) -> Iterator[dict]:
        """Contacts matching a search query; the cursor travels in the body."""
        pagination: dict[str, Any] = {"per_page": per_page}
        followed: set[str] = set()
        while True:
            body = {"query": query, "pagination": pagination}
            page = self.request("POST", "/contacts/search", json=body)
            yield from page_items(page, "data", "POST", "/contacts/search")
            cursor = next_starting_after(page)
            if cursor is None:
                return
            refuse_repeated(cursor, followed, "POST", "/contacts/search")
            pagination = {"per_page": per_page, "starting_after": cursor}

    def list_contact_companies(self, contact_id: str) -> list[dict]:
        """The companies a contact belongs to."""
        companies: list[dict] = []
        params: dict[str, Any] = {"per_page": MAX_PER_PAGE}
        path = f"{contact_path(contact_id)}/companies"
        followed: set[str] = set()
        while True:
            page = self.request("GET", path, params=params)
            # Intercom names the list `data`; some answers (and the sandbox) `companies`.
            key = "companies" if isinstance(page, dict) and "data" not in page else "data"
            companies.extend(page_items(page, key, "GET", path))
            next_url = next_page_url(page)
            if not next_url:
                return companies
            refuse_repeated(next_url, followed, "GET", path)
            path, params = next_url, None

    # Events ----------------------------------------------------------------------------------

    def list_events(
        self,
        *,
        intercom_user_id: str | None = None,
        user_id: str | None = None,
        per_page: int = MAX_EVENTS_PER_PAGE,
    ) -> Iterator[dict]:
        """One contact's events (Intercom keeps 90 days), newest first, following `pages.next`."""
        path, params = events_request(intercom_user_id, user_id, per_page)
        followed: set[str] = set()
        while True:
            page = self.request("GET", path, params=params)
            yield from events_of(page, path)
            next_url = next_page_url(page)
            if not next_url:
                return
            refuse_repeated(next_url, followed, "GET", path)
            path, params = next_url, None

    # Companies -------------------------------------------------------------------------------

    def scroll_companies_page(self, scroll_param: str | None = None) -> dict:
        """One page of the companies scroll.

        A 5xx is not retried here: after one, the whole scroll must start again (the caller
        restarts it, as it does on expiry).
        """
        params = {"scroll_param": scroll_param} if scroll_param else None
        page = self.request("GET", "/companies/scroll", params=params, retry_server_errors=False)
        # Only an empty `data` ends the scroll: a page without one is no end, and taken for
        # one it would turn every company not read yet into a tombstone.
        page_items(page, "data", "GET", "/companies/scroll")
        return page

    # Data attributes -------------------------------------------------------------------------

    def list_data_attributes(self, model: str = "contact") -> list[dict]:
        """Every data attribute of a model (`contact` or `company`), custom ones included."""
        page = self.request("GET", "/data_attributes", params={"model": model}) or {}
        data = page.get("data") or []
        if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
            # Without attribute objects nobody can tell which attributes exist.
            if isinstance(data, list):
                odd = next(a for a in data if not isinstance(a, dict))
                shape = f"a list holding a {type(odd).__name__}"
            else:
                shape = f"a {type(data).__name__}"
            raise IntercomError(
                f"data is {shape}, not a list of attribute objects: {str(data)[:200]}",
                status=200,
                method="GET",
                path="/data_attributes",
            )
        return data

    def create_data_attribute(
        self,
        name: str,
        data_type: str,
        model: str = "contact",
        description: str | None = None,
    ) -> dict:
        """Create a custom data attribute (400 `parameter_invalid` when it already exists)."""
        body: dict[str, Any] = {"name": name, "model": model, "data_type": data_type}
        if description:
            body["description"] = description
        return self.request("POST", "/data_attributes", json=body) or {}


class ThreadPoolTransport(httpx.AsyncBaseTransport):
    """An async transport that sends each request with httpx's sync transport in a thread.

    Reading events from the sandbox on loopback, httpx's own async transport (httpcore over
    anyio) spent 1.4 to 2.5 ms of CPU a request with 8 connections and 2.6 to 3.6 ms with 32;
    this one 1.0 and 1.5 to 1.9 ms. Waiting on a socket releases the interpreter, so the
    threads overlap their requests as coroutines would. The answer is read whole in the
    thread and handed back as bytes.

    Args:
        workers: Threads, and so requests at the same time; also the connections kept.
    """

    def __init__(self, workers: int) -> None:
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        self._transport = httpx.HTTPTransport(limits=limits)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intercom-http")

    def _send(self, request: httpx.Request) -> tuple[int, httpx.Headers, bytes, dict]:
        response = self._transport.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return response.status_code, response.headers, content, response.extensions

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request in a worker thread; the answer comes back fully read."""
        loop = asyncio.get_running_loop()
        status, headers, content, extensions = await loop.run_in_executor(
            self._pool, self._send, request
        )
        kept = {k: v for k, v in extensions.items() if k in ("http_version", "reason_phrase")}
        return httpx.Response(status, headers=headers, content=content, extensions=kept)

    async def aclose(self) -> None:
        """Let requests under way finish, then close the connections."""
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
        self._transport.close()


class AsyncIntercomClient(_IntercomBase):
    """Asynchronous Intercom client (an `httpx.AsyncClient`), same rules as `IntercomClient`.

    Concurrency is the caller's: bound it with a semaphore. The rate budget is shared by all
    requests of this client, so concurrent readers throttle together. Requests go out through
    a `ThreadPoolTransport` of `max_connections` threads unless a transport is given.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(base_url, token, timeout, **options)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=timeout,
            transport=transport or ThreadPoolTransport(max_connections),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncIntercomClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        retry_server_errors: bool = True,
    ) -> dict | None:
        """Send one request with throttling and retries (see `IntercomClient.request`)."""
        async for attempt in tenacity.AsyncRetrying(**self._retry_kwargs(retry_server_errors)):
            with attempt:
                return await self._attempt(method, path, params, json)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _attempt(self, method: str, path: str, params: Any, body: Any) -> dict | None:
        pause = self.budget.acquire()
        if pause > 0:
            self.stats.record_throttle(pause)
            await asyncio.sleep(pause)
        try:
            response = await self._http.request(method, path, params=params, json=body)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # DecodingError: a body its Content-Encoding does not fit, as good as no answer.
            raise self._connection_error(method, path, exc) from exc
        return self._check(response)

    async def list_events(
        self,
        *,
        intercom_user_id: str | None = None,
        user_id: str | None = None,
        per_page: int = MAX_EVENTS_PER_PAGE,
    ) -> AsyncIterator[dict]:
        """One contact's events, newest first, following `pages.next`."""
        path, params = events_request(intercom_user_id, user_id, per_page)
        followed: set[str] = set()
        while True:
            page = await self.request("GET", path, params=params)
            for event in events_of(page, path):
                yield event
            next_url = next_page_url(page)
            if not next_url:
                return
            refuse_repeated(next_url, followed, "GET", path)
            path, params = next_url, None

    async def update_contact(self, contact_id: str, custom_attributes: dict[str, Any]) -> dict:
        """Set custom attributes of one contact; returns the updated contact."""
        body = {"custom_attributes": custom_attributes}
        return await self.request("PUT", contact_path(contact_id), json=body) or {}

    async def get_contact(self, contact_id: str) -> dict:
        """One contact by Intercom id."""
        return await self.request("GET", contact_path(contact_id)) or {}


def contact_path(contact_id: str) -> str:
    """`/contacts/{id}` with the id as one path segment, percent-encoded (RFC 3986).

    A `?`, `#` or `/` in an id must not turn the request into one for another contact or
    endpoint.
    """
    return f"/contacts/{quote(str(contact_id), safe='')}"


# Pagination helpers: pure functions of one page ------------------------------------------------


def page_items(page: dict | None, key: str, method: str = "", path: str = "") -> list[Any]:
    """The list of records of one page (`data`, `events`, ...), which must be a list.

    A page without it (missing, null, an object) or an empty answer is no page: read as an
    empty one, it would end the listing early and lose every record after it.

    Raises:
        IntercomError: The answer is empty or its `key` is not a list.
    """
    if page is None:
        raise IntercomError(
            f"empty answer where a page with a {key!r} list was expected",
            status=200,
            method=method,
            path=path,
        )
    items = page.get(key)
    if not isinstance(items, list):
        shape = "missing" if key not in page else f"a {type(items).__name__}"
        raise IntercomError(
            f"page has no {key!r} list ({key} is {shape}): {json.dumps(page)[:200]}",
            status=200,
            method=method,
            path=path,
        )
    return items


def _pages_next(page: dict) -> Any:
    pages = page.get("pages")
    if pages is None:
        return None
    if not isinstance(pages, dict):
        raise IntercomError(f"pages is a {type(pages).__name__}, not an object: {pages!r}"[:300])
    return pages.get("next")


def next_starting_after(page: dict) -> str | None:
    """The cursor of the next page of a contacts list or search, or None on the last page.

    Raises:
        IntercomError: `pages.next` is there but holds no cursor to follow (the listing
            would end early, losing the pages after it).
    """
    following = _pages_next(page)
    if following is None:
        return None
    cursor = following.get("starting_after") if isinstance(following, dict) else None
    if not isinstance(cursor, str) or not cursor:
        raise IntercomError(f"pages.next has no starting_after cursor: {following!r}"[:300])
    return cursor


def refuse_repeated(cursor: str, followed: set[str], method: str, path: str) -> None:
    """Note a cursor (or next-page URL) about to be followed; refuse one followed already.

    A listing that hands back a cursor it gave before would serve the same pages forever.

    Raises:
        IntercomError: The cursor was followed before in this listing.
    """
    if cursor in followed:
        raise IntercomError(
            f"pages.next repeats {cursor!r}, a cursor already followed: the listing loops "
            f"after {len(followed) + 1} pages",
            status=200,
            method=method,
            path=path,
        )
    followed.add(cursor)


def next_page_url(page: dict) -> str | None:
    """The `pages.next` URL of an events (or companies) page, or None on the last page.

    Raises:
        IntercomError: `pages.next` is there but not a URL to follow.
    """
    following = _pages_next(page)
    if following is None or following == "":
        return None
    if not isinstance(following, str):
        raise IntercomError(f"pages.next is not a URL: {following!r}"[:300])
    return following


def events_request(
    intercom_user_id: str | None, user_id: str | None, per_page: int
) -> tuple[str, dict[str, Any]]:
    """Path and parameters of the first page of one contact's events."""
    params: dict[str, Any] = {"type": "user", "per_page": per_page}
    if intercom_user_id:
        params["intercom_user_id"] = intercom_user_id
    elif user_id:
        params["user_id"] = user_id
    else:
        raise ValueError("events need an intercom_user_id or a user_id")
    return "/events", params


def events_of(page: dict | None, path: str = "/events") -> list[Any]:
    """The events of one answer, parsed by `type` (the published spec misnames this answer)."""
    if page is not None and page.get("type") not in (None, "event.list"):
        raise IntercomError(f"expected an event.list, got type {page.get('type')!r}")
    return list(page_items(page, "events", "GET", path))
