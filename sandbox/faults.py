"""Fault profiles and the rate limiters: how the sandbox misbehaves on demand.

A profile is a named set of switches; the server reads the current one on every request, so
the profile can change while a client runs (`sb.admin.set_faults(...)`). The samples of the
project's failure-mode catalogue map onto profiles: `scroll_expiry` (1), the same scroll
parameter on every page (2, always on), `no_companies` (3), `scroll_5xx` (4), `duplicates`
(5), `rate_limit_headers` (7), `server_errors` (8), `churn` (9, 17), `stripe_retry_classes` (23);
`malformed_records` serves records a reader must quarantine;
`stripe_5xx_storm` interrupts a Stripe sync past its retry budget; `stripe_malformed` lists
Stripe objects that cannot be parsed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

# What each script step answers; "ok" lets the request through.
SCRIPTS = (
    "ok",
    "ok_remaining_1",
    "429_reset_past",
    "429_no_reset",
    "503_html",
    "500_json",
    "429_lock_timeout",
    "429_rate_limit",
    "500_api_error",
)


@dataclass(frozen=True)
class FaultProfile:
    """Switches of one fault profile.

    Attributes:
        name: The profile's name.
        rate_limit_per_minute: Overrides the Intercom limit (Stripe gets a sixtieth a second).
        error_share: Share of vendor answers replaced by a 5xx (half of them HTML, not JSON).
        delay_seconds: Added to every vendor answer.
        duplicate_overlap: Contacts pages repeat this many items of the previous page.
        scroll_expire_after_pages: The companies scroll dies after this many pages.
        scroll_idle_seconds: A scroll unused this long expires; a new one is refused until then.
        scroll_5xx_on_page: This page of the companies scroll answers 500 and kills the scroll.
        no_companies: The companies scroll finds nothing.
        churn: Each new contacts sync after the first sees a lead merged into a user, a
            contact archived, another deleted and a Stripe customer deleted.
        live_writes: While a contacts sync pages, contacts it already listed get an event and
            an update.
        intercom_script: Intercom answers cycle through these steps (see `SCRIPTS`).
        rate_limit_reset_seconds: How far ahead the `ok_remaining_1` step puts the reset.
        malformed_every: Every this many contacts (by position), one is served with an
            `updated_at` that is ISO text, not Unix seconds, and another's newest event
            without its `event_name`: records a reader must quarantine, not drop or load.
        stripe_script: Stripe answers cycle through these steps.
        stripe_storm_after: Stripe requests on `stripe_storm_path` answered as usual before
            every later one answers 500 `api_error` (a storm no retry budget outlasts); None:
            no storm.
        stripe_storm_path: Prefix of the Stripe paths (`/v1/...`) the storm hits.
        stripe_malformed_every: Every this many stored objects of each Stripe kind (events
            apart) are listed broken, in turn without `id` and with `created` as ISO text;
            the object that ends a page keeps its id, which the next page's cursor needs.
        seed: Seed of the random error draws.
    """

    name: str = "none"
    rate_limit_per_minute: int | None = None
    error_share: float = 0.0
    delay_seconds: float = 0.0
    duplicate_overlap: int = 0
    scroll_expire_after_pages: int | None = None
    scroll_idle_seconds: float = 60.0
    scroll_5xx_on_page: int | None = None
    no_companies: bool = False
    churn: bool = False
    live_writes: bool = False
    intercom_script: tuple[str, ...] = ()
    stripe_script: tuple[str, ...] = ()
    rate_limit_reset_seconds: int = 7
    malformed_every: int | None = None
    stripe_storm_after: int | None = None
    stripe_storm_path: str = "/v1/"
    stripe_malformed_every: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # Overrides arrive as JSON through the admin API; a wrong type would fail later, on
        # every vendor request, so it is refused here with the switch's name.
        def integer(value: Any, low: int, optional: bool = False) -> bool:
            if value is None:
                return optional
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        def real(value: Any, low: float, high: float) -> bool:
            return (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and low <= value <= high
            )

        checks = {
            "name": isinstance(self.name, str),
            "rate_limit_per_minute": integer(self.rate_limit_per_minute, 1, optional=True),
            "error_share": real(self.error_share, 0.0, 1.0),
            "delay_seconds": real(self.delay_seconds, 0.0, 60.0),
            "duplicate_overlap": integer(self.duplicate_overlap, 0),
            "scroll_expire_after_pages": integer(self.scroll_expire_after_pages, 1, True),
            "scroll_idle_seconds": real(self.scroll_idle_seconds, 0.0, 86400.0),
            "scroll_5xx_on_page": integer(self.scroll_5xx_on_page, 1, optional=True),
            "no_companies": isinstance(self.no_companies, bool),
            "churn": isinstance(self.churn, bool),
            "live_writes": isinstance(self.live_writes, bool),
            "rate_limit_reset_seconds": integer(self.rate_limit_reset_seconds, 0),
            "malformed_every": integer(self.malformed_every, 1, optional=True),
            "stripe_storm_after": integer(self.stripe_storm_after, 0, optional=True),
            "stripe_storm_path": isinstance(self.stripe_storm_path, str)
            and self.stripe_storm_path.startswith("/v1/"),
            "stripe_malformed_every": integer(self.stripe_malformed_every, 1, optional=True),
            "seed": integer(self.seed, 0),
        }
        for script in ("intercom_script", "stripe_script"):
            steps = getattr(self, script)
            valid = isinstance(steps, list | tuple) and all(step in SCRIPTS for step in steps)
            checks[script] = valid
            if valid:
                object.__setattr__(self, script, tuple(steps))
        bad = [name for name, passed in checks.items() if not passed]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid fault switches: {shown} (see FaultProfile)")


PROFILES: dict[str, FaultProfile] = {
    p.name: p
    for p in (
        FaultProfile("none"),
        FaultProfile("tight_rate_limit", rate_limit_per_minute=60),
        FaultProfile("flaky", error_share=0.1),
        FaultProfile("slow", delay_seconds=0.25),
        FaultProfile("duplicates", duplicate_overlap=1),
        FaultProfile("scroll_expiry", scroll_expire_after_pages=1),
        FaultProfile("scroll_5xx", scroll_5xx_on_page=2),
        FaultProfile("no_companies", no_companies=True),
        FaultProfile("churn", churn=True),
        FaultProfile("live_writes", live_writes=True),
        FaultProfile(
            "rate_limit_headers",
            intercom_script=("ok_remaining_1", "429_reset_past", "429_no_reset", "ok"),
        ),
        FaultProfile("server_errors", intercom_script=("503_html", "500_json", "ok")),
        FaultProfile("malformed_records", malformed_every=50),
        FaultProfile(
            "stripe_retry_classes",
            stripe_script=("429_lock_timeout", "429_rate_limit", "500_api_error", "ok"),
        ),
        FaultProfile("stripe_5xx_storm", stripe_storm_after=0),
        FaultProfile("stripe_malformed", stripe_malformed_every=10),
    )
}


def profile(name: str | None, **overrides: Any) -> FaultProfile:
    """The named profile (None means "none") with any switches overridden.

    Raises:
        ValueError: The name is not a profile, or an override is not a switch.
    """
    key = name or "none"
    if key not in PROFILES:
        raise ValueError(f"unknown fault profile {key!r}; known: {', '.join(sorted(PROFILES))}")
    unknown = set(overrides) - set(FaultProfile.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown fault switches {sorted(unknown)}")
    return replace(PROFILES[key], **overrides)


@dataclass
class RateLimiter:
    """Fixed windows aligned on the epoch: `per_window` calls every `window_seconds`.

    Intercom spreads its per-minute limit over 10-second windows; Stripe counts per second.
    """

    per_window: int | None
    window_seconds: int = 10
    _window: int = field(default=-1, repr=False)
    _used: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def per_minute(cls, limit: int | None, window_seconds: int = 10) -> RateLimiter:
        """A limiter allowing `limit` calls a minute, counted in windows of the given length."""
        if limit is None:
            return cls(None, window_seconds)
        return cls(max(1, math.ceil(limit * window_seconds / 60)), window_seconds)

    def take(self, now: float | None = None) -> tuple[bool, int, int, int]:
        """Count one call; returns (allowed, limit, remaining, reset Unix seconds)."""
        now = time.time() if now is None else now
        window = int(now // self.window_seconds)
        reset = (window + 1) * self.window_seconds
        if self.per_window is None:
            return True, 0, 0, reset
        with self._lock:
            if window != self._window:
                self._window, self._used = window, 0
            if self._used >= self.per_window:
                return False, self.per_window, 0, reset
            self._used += 1
            return True, self.per_window, self.per_window - self._used, reset
