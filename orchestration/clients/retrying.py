"""Retry and rate-limit decisions shared by the Intercom and Stripe clients.

The decisions are pure functions of a response's status and headers and of the clock, so they
can be tested without a server; tenacity runs the attempts.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import tenacity

# Jitter spreads the retries of concurrent readers that were refused in the same instant.
DEFAULT_JITTER_SECONDS = 0.5


@dataclass
class ClientStats:
    """What a client did: requests, answers by status, 429s, retries and time spent waiting.

    Attributes:
        requests: HTTP requests sent (every attempt counts).
        responses: Answers by status code.
        rate_limited: Answers with status 429.
        retries: Attempts repeated after a retryable failure.
        seconds_waited: Time slept in back-off after a failure.
        seconds_throttled: Time slept before a request to keep inside the rate limit.
    """

    requests: int = 0
    responses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    retries: int = 0
    seconds_waited: float = 0.0
    seconds_throttled: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_response(self, status: int) -> None:
        """Count one answer."""
        with self._lock:
            self.requests += 1
            self.responses[status] += 1
            if status == 429:
                self.rate_limited += 1

    def record_failure(self) -> None:
        """Count one request that got no answer (connection error, timeout)."""
        with self._lock:
            self.requests += 1

    def record_retry(self, seconds: float) -> None:
        """Count one retry and the back-off slept before it."""
        with self._lock:
            self.retries += 1
            self.seconds_waited += seconds

    def record_throttle(self, seconds: float) -> None:
        """Count time slept to stay inside the rate limit."""
        with self._lock:
            self.seconds_throttled += seconds

    def snapshot(self) -> dict[str, float]:
        """The numbers as a flat dict, for logs, metadata and differences between two moments."""
        with self._lock:
            flat: dict[str, float] = {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "retries": self.retries,
                "seconds_waited": round(self.seconds_waited, 3),
                "seconds_throttled": round(self.seconds_throttled, 3),
            }
            for status, count in sorted(self.responses.items()):
                flat[f"status_{status}"] = count
        return flat

    @staticmethod
    def difference(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
        """What happened between two snapshots."""
        return {key: round(value - before.get(key, 0), 3) for key, value in after.items()}


class ServerClock:
    """The server's clock, from the `Date` header of its answers.

    Incremental cursors must be in the server's time: a sandbox (or a skewed host) may live
    at another date than this machine. Until an answer with a `Date` came, local time is used.
    """

    def __init__(self) -> None:
        self.offset: float | None = None
        self.pinned = False

    def pin(self, offset: float) -> None:
        """Fix the offset (server minus local seconds), ignoring `Date` from now on.

        For a server whose `Date` is not its data's clock, such as the sandbox.
        """
        self.offset, self.pinned = offset, True

    def observe(self, headers: Mapping[str, str]) -> None:
        """Record the offset between the server's `Date` and local time."""
        if self.pinned:
            return
        value = _header(headers, "Date")
        if not value:
            return
        try:
            server = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        self.offset = server - time.time()

    def now(self) -> int:
        """The server's current time in Unix seconds."""
        return int(time.time() + (self.offset or 0.0))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx and the Stripe SDK both give case-insensitive mappings, plain dicts in tests don't.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def parse_int_header(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when missing or not a finite number (`inf`, `nan`, `1e400`)."""
    value = _header(headers, name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def wait_for_reset(
    reset_at: float | None,
    now: float,
    *,
    cap: float,
    jitter: float = DEFAULT_JITTER_SECONDS,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait for a rate-limit window that resets at `reset_at` (Unix seconds).

    Returns `max(0, reset - now)` plus up to `jitter` seconds, capped at `cap`; None when the
    reset time is unknown, so the caller falls back to exponential back-off.
    """
    if reset_at is None:
        return None
    return min(cap, max(0.0, reset_at - now) + jitter * rng())


class RetryableError(Exception):
    """Mixin marker: an error the clients retry; `retry_after` is a server-given wait."""

    retry_after: float | None = None


def backoff_wait(
    *, initial: float, maximum: float, cap: float
) -> Callable[[tenacity.RetryCallState], float]:
    """A tenacity wait that prefers the server's hint.

    The error's `retry_after` (already jittered) when the answer gave one, else jittered
    exponential back-off; never more than `cap` seconds.
    """
    exponential = tenacity.wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = getattr(error, "retry_after", None)
        if hinted is not None:
            return min(cap, hinted)
        return min(cap, exponential(state))

    return wait


class RateBudget:
    """Throttles before the rate-limit budget runs out, from the `X-RateLimit-*` headers.

    The latest answer tells how many calls are left in the window and when it resets; requests
    still in flight will spend some of that, so a request waits for the reset when what is left
    minus what is in flight falls to `reserve`. Safe to share between threads; async callers
    sleep the returned time themselves.
    """

    def __init__(self, *, reserve: int = 2, jitter: float = 0.2, cap: float = 60.0) -> None:
        self.reserve = reserve
        self.jitter = jitter
        self.cap = cap
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.in_flight = 0
        self._lock = threading.Lock()

    def acquire(self, now: float | None = None) -> float:
        """Reserve one request; returns how long to sleep before sending it (0 to go now)."""
        now = time.time() if now is None else now
        with self._lock:
            wait = 0.0
            if self.remaining is not None and self.reset_at is not None:
                if self.reset_at <= now:
                    # The window we knew about is over; the next answer tells the new budget.
                    self.remaining = self.limit
                elif self.remaining - self.in_flight <= self.reserve:
                    # Everyone asking until the reset waits for it too: the count stays low
                    # until an answer from the new window arrives.
                    wait = min(self.cap, self.reset_at - now + self.jitter * random.random())
            self.in_flight += 1
            return wait

    def release(self, headers: Mapping[str, str] | None, now: float | None = None) -> None:
        """Record the answer of a request reserved with `acquire` (None: no answer came)."""
        now = time.time() if now is None else now
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            if headers is None:
                return
            limit = parse_int_header(headers, "X-RateLimit-Limit")
            remaining = parse_int_header(headers, "X-RateLimit-Remaining")
            reset_at = parse_int_header(headers, "X-RateLimit-Reset")
            if remaining is None:
                return
            self.limit = limit if limit is not None else self.limit
            if reset_at is not None and reset_at > now:
                if self.reset_at is None or reset_at > self.reset_at:
                    # A newer (or the first known) window: its count replaces the old one's.
                    self.remaining = remaining
                else:
                    # Answers of one window arrive out of order; the smallest count is newest.
                    current = self.remaining if self.remaining is not None else remaining
                    self.remaining = min(current, remaining)
                self.reset_at = reset_at
            else:
                # A reset already past (or none): trust the count, not the clock.
                self.remaining = remaining
                self.reset_at = reset_at
