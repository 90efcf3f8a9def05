"""Stripe's own SDK (`StripeClient`) pointed at any host, with retries it lacks.

stripe-python retries 5xx, 409 and connection errors but never a 429, and its back-off ignores
`Retry-After`. `RetryingHTTPClient` replaces the SDK's retry loop with tenacity: it retries
429 (rate limits and lock timeouts), 409, 5xx and connection errors with jittered exponential
back-off, waits `Retry-After` when the answer gives one, and obeys `Stripe-Should-Retry` both
ways. Every other 4xx goes straight back to the SDK, which raises its typed error with
Stripe's message. Decisions use status and headers only, never the message text.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe
import tenacity

from orchestration.clients.retrying import (
    DEFAULT_JITTER_SECONDS,
    ClientStats,
    RetryableError,
    ServerClock,
    backoff_wait,
)

log = logging.getLogger(__name__)

# Pinned so a new SDK in the lock file cannot change the shape of what lands in the warehouse:
# the first version whose invoices carry the subscription at `parent.subscription_details`.
STRIPE_API_VERSION = "2025-03-31.basil"
DEFAULT_STRIPE_URL = "https://api.stripe.com"


@dataclass(frozen=True)
class SentRequest:
    """A request as the transport last sent it: what a failure's message names.

    Attributes:
        method: HTTP method.
        url: Full URL with its query.
        attempts: Attempts made so far, the first included.
        status: Status of the last answer; None when none came.
    """

    method: str
    url: str
    attempts: int
    status: int | None

    def describe(self) -> str:
        """`GET https://... (HTTP 500, attempt 6)`."""
        answer = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.method} {self.url} ({answer}, attempt {self.attempts})"


class _RetryableAnswer(RetryableError):
    """A retryable status; carries the answer so the last one can go back to the SDK."""

    def __init__(self, response: tuple[Any, int, Mapping[str, str]], retry_after: float | None):
        super().__init__(f"retryable status {response[1]}")
        self.response = response
        self.retry_after = retry_after


class _RetryableConnection(RetryableError):
    def __init__(self, error: stripe.APIConnectionError):
        super().__init__(str(error))
        self.error = error


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer is worth another attempt, from its status and headers alone."""
    lowered = {key.lower(): value for key, value in headers.items()}
    hint = lowered.get("stripe-should-retry")
    if hint == "false":
        return False
    if hint == "true":
        return True
    return status in (409, 429) or status >= 500


def retry_after_seconds(
    headers: Mapping[str, str], cap: float, jitter: float = 0.0
) -> float | None:
    """`Retry-After` in seconds plus `jitter` (capped), or None when absent or not a number."""
    lowered = {key.lower(): value for key, value in headers.items()}
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return min(cap, max(0.0, float(value)) + jitter)
    except ValueError:
        return None


class RetryingHTTPClient(stripe.HTTPXClient):
    """The SDK's httpx transport with tenacity retries and counters.

    Args:
        max_attempts: Attempts per request, the first included.
        initial_backoff: Scale of the exponential back-off in seconds.
        max_backoff: Longest back-off step in seconds.
        retry_after_cap: Longest wait honoured from `Retry-After`.
        timeout: Seconds per request.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        retry_after_cap: float = 60.0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(timeout=timeout, allow_sync_methods=True)
        self.max_attempts = max_attempts
        self.retry_after_cap = retry_after_cap
        self.stats = ClientStats()
        self.clock = ServerClock()
        # Per thread, so a client shared between threads names each one's own request.
        self._local = threading.local()
        self._wait = backoff_wait(initial=initial_backoff, maximum=max_backoff, cap=retry_after_cap)

    def request_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        """One SDK request with our retries; the last answer goes back to the SDK as it is."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableError),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return self._attempt(method, url, headers, post_data, number)
        except _RetryableAnswer as spent:
            # Out of attempts: the SDK turns the last answer into its typed error.
            return spent.response
        except _RetryableConnection as spent:
            raise spent.error from None
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def last_request(self) -> SentRequest | None:
        """The latest request this thread sent, with its attempts and last status."""
        return getattr(self._local, "request", None)

    def _attempt(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any, number: int
    ) -> tuple[Any, int, Mapping[str, str]]:
        self._local.request = SentRequest(method.upper(), url, number, None)
        try:
            response = self.request(method, url, headers, post_data)
        except stripe.APIConnectionError as exc:
            self.stats.record_failure()
            if exc.should_retry:
                raise _RetryableConnection(exc) from exc
            raise
        _, status, response_headers = response
        self._local.request = SentRequest(method.upper(), url, number, status)
        self.stats.record_response(status)
        self.clock.observe(response_headers)
        if status >= 400 and should_retry(status, response_headers):
            raise _RetryableAnswer(
                response,
                retry_after_seconds(
                    response_headers, self.retry_after_cap, DEFAULT_JITTER_SECONDS * random.random()
                ),
            )
        return response

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        self.stats.record_retry(seconds)
        log.info("Stripe: retrying in %.2f s after attempt %d", seconds, state.attempt_number)


def make_stripe_client(
    api_key: str,
    base_url: str | None = None,
    *,
    api_version: str = STRIPE_API_VERSION,
    **retry_options: Any,
) -> stripe.StripeClient:
    """A `StripeClient` for `base_url` (Stripe itself when None) with our retrying transport.

    The transport is reachable as `client.retrying_http` for its `stats`.

    Args:
        api_key: Secret or restricted key.
        base_url: API host; the sandbox passes its own.
        api_version: Stripe API version sent with every request.
        **retry_options: Passed to `RetryingHTTPClient`.
    """
    if not api_key:
        raise ValueError("Stripe API key is empty")
    http_client = RetryingHTTPClient(**retry_options)
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": (base_url or DEFAULT_STRIPE_URL).rstrip("/")},
        stripe_version=api_version,
        http_client=http_client,
        # Our transport retries; the SDK's own loop would multiply attempts.
        max_network_retries=0,
    )
    client.retrying_http = http_client  # type: ignore[attr-defined]
    return client
