"""Dagster resources for the outside systems: Intercom and Stripe.

They hold no secrets in config: each reads `orchestration.settings.get_settings()` when a run
asks for a client, so the same definitions serve the real services and the sandbox (whose
runner exports `INTERCOM_BASE_URL`, `INTERCOM_ACCESS_TOKEN`, `STRIPE_BASE_URL` and
`STRIPE_API_KEY`).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx
import stripe

from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient
from orchestration.clients.stripe import make_stripe_client
from orchestration.settings import Settings, get_settings


class MissingCredentials(RuntimeError):
    """Neither credentials nor a sandbox address are set."""


def intercom_endpoint(settings: Settings) -> tuple[str, str]:
    """Base URL and token of the Intercom to read.

    Raises:
        MissingCredentials: No token is set.
    """
    if not settings.intercom_access_token:
        raise MissingCredentials(
            "INTERCOM_ACCESS_TOKEN is not set: export a token (and INTERCOM_REGION), or start "
            "the sandbox (`nextbest sandbox serve`) and export the variables it prints"
        )
    return settings.intercom_url, settings.intercom_access_token


def stripe_endpoint(settings: Settings) -> tuple[str | None, str]:
    """Base URL (None for Stripe itself) and key of the Stripe to read.

    Raises:
        MissingCredentials: No key is set.
    """
    if not settings.stripe_api_key:
        raise MissingCredentials(
            "STRIPE_API_KEY is not set: export a secret or restricted key, or start the "
            "sandbox (`nextbest sandbox serve`) and export the variables it prints"
        )
    return settings.stripe_base_url, settings.stripe_api_key


def sandbox_clock_offset(base_url: str | None) -> float | None:
    """Seconds the local sandbox's clock is ahead of this machine's, or None elsewhere.

    The sandbox serves a dataset at the dataset's time, but its `Date` header is this
    machine's; the clients' cursors must follow the data's clock, which the sandbox tells at
    `/_sandbox/facts`. Only a loopback address under `/intercom` or `/stripe` is asked.
    """
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    root, _, vendor = parts.path.rstrip("/").rpartition("/")
    if vendor not in ("intercom", "stripe"):
        return None
    try:
        answer = httpx.get(f"{parts.scheme}://{parts.netloc}{root}/_sandbox/facts", timeout=5)
        return float(answer.json()["clock"]) - time.time()
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _max_attempts(configured: int | None) -> int:
    if configured is not None:
        return configured
    from orchestration.ingest.settings import IngestSettings

    return IngestSettings().max_attempts


class IntercomResource(dg.ConfigurableResource):
    """Intercom 2.14 clients (sync and async) with retries, throttling and pagination."""

    timeout_seconds: float = 30.0
    max_attempts: int | None = None  # None: NEXTBEST_INGEST_MAX_ATTEMPTS

    def client(self) -> IntercomClient:
        """A synchronous client; close it (or use `with`) when done."""
        base_url, token = intercom_endpoint(get_settings())
        client = IntercomClient(
            base_url,
            token,
            timeout=self.timeout_seconds,
            max_attempts=_max_attempts(self.max_attempts),
        )
        _pin_sandbox_clock(client.clock, base_url)
        return client

    def async_client(self, max_connections: int = 64) -> AsyncIntercomClient:
        """An asynchronous client for bounded-concurrency reads; `aclose()` it when done."""
        base_url, token = intercom_endpoint(get_settings())
        client = AsyncIntercomClient(
            base_url,
            token,
            timeout=self.timeout_seconds,
            max_attempts=_max_attempts(self.max_attempts),
            max_connections=max_connections,
        )
        _pin_sandbox_clock(client.clock, base_url)
        return client


class StripeResource(dg.ConfigurableResource):
    """A `StripeClient` with a pinned API version and retries of 429, 409, 5xx."""

    timeout_seconds: float = 30.0
    max_attempts: int | None = None  # None: NEXTBEST_INGEST_MAX_ATTEMPTS

    def client(self) -> stripe.StripeClient:
        """The Stripe client; its transport's numbers are at `client.retrying_http.stats`."""
        base_url, key = stripe_endpoint(get_settings())
        client = make_stripe_client(
            key,
            base_url,
            max_attempts=_max_attempts(self.max_attempts),
            timeout=self.timeout_seconds,
        )
        _pin_sandbox_clock(client.retrying_http.clock, base_url)  # type: ignore[attr-defined]
        return client


def _pin_sandbox_clock(clock: Any, base_url: str | None) -> None:
    offset = sandbox_clock_offset(base_url)
    if offset is not None:
        clock.pin(offset)
