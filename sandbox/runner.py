"""Run the sandbox in-process: a real HTTP server on loopback in a background thread.

Usage::

    from sandbox.runner import running_sandbox

    with running_sandbox("simple_shop", faults=None, dirt=True) as sb:
        sb.base_url          # "http://127.0.0.1:PORT"
        sb.intercom_url      # f"{base_url}/intercom": Intercom paths go under it
        sb.stripe_url        # f"{base_url}/stripe": StripeClient(base_addresses={"api": ...})
        sb.intercom_token, sb.stripe_key
        sb.env()             # INTERCOM_BASE_URL, INTERCOM_ACCESS_TOKEN, STRIPE_BASE_URL,
                             # STRIPE_API_KEY for the clients
        sb.store             # the in-process store (tests may inspect or mutate it)
        sb.admin             # wrappers over /_sandbox/: writes(), attributes(), dirt(),
                             # facts(), mutations(), add_event(), merge(), archive_contact(),
                             # delete_contact(), delete_customer(), set_subscription_status(),
                             # advance_clock(), set_faults(), stripe_requests(),
                             # remove_stripe_object(), stripe_malformed()

Arguments of `running_sandbox` (all keyword after `dataset`):

- dataset: "simple_shop", "mobile_onboarding_2018", "synthetic" or "events_file".
- port: 0 picks a free port.
- faults: a fault profile name (sandbox/faults.py), or None.
- dirt: add the documented dirt (docs/sandbox.md).
- event_window_days: Intercom's event window; 0 turns it off.
- clock: a datetime for the sandbox's "now"; default a minute after the last event.
- rate_limit_per_minute: Intercom's limit (default 10,000); None is unlimited.
- users, seed: size and seed of the synthetic dataset.
- events_file, conversion_event, column_map: a user's own CSV (dataset "events_file").
- cache_dir: where downloads are cached; default `get_settings().cache_dir`.
- signup: "first_event", or the name of the event that marks a sign-up.
- n_companies: how many companies to make up; default one per 12 users, 5 to 300.
- strict_intercom_version: answer 400 to an Intercom request without `Intercom-Version: 2.14`.

`sb.state.request_log` (or `sb.admin.requests()`) lists every vendor request: vendor, method,
path, query, the `Intercom-Version` sent, the status answered and, for the companies scroll,
where the page started and which companies it served.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sandbox.app import SandboxState, create_app
from sandbox.store import Store

log = logging.getLogger(__name__)

INTERCOM_TOKEN = "sandbox-intercom-token"
STRIPE_KEY = "sk_test_sandbox"
DATASETS = ("simple_shop", "mobile_onboarding_2018", "synthetic", "events_file")


class SandboxAdmin:
    """Python wrappers over the sandbox's admin API (`/_sandbox/`)."""

    def __init__(self, base_url: str):
        self.client = httpx.Client(base_url=f"{base_url}/_sandbox", timeout=30)

    def _get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict | None = None) -> Any:
        response = self.client.post(path, json=body or {})
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {path}: {response.status_code} {response.text}")
        return response.json()

    def writes(self) -> list[dict]:
        """Every `PUT /contacts/{id}` received: contact id, attributes, time, status, errors."""
        return self._get("/writes")

    def attributes(self) -> dict[str, dict]:
        """Current custom attributes of every contact that has any, by contact id."""
        return self._get("/attributes")

    def dirt(self) -> list[dict]:
        """Every record the dirt changed: kind, object, id, user id, detail."""
        return self._get("/dirt")

    def facts(self) -> dict:
        """Dataset facts: conversion event, counts, clock, event window, fault profile."""
        return self._get("/facts")

    def stripe_requests(self) -> list[dict]:
        """Every Stripe request received: method, path, query, status, `Stripe-Version` sent."""
        return self._get("/stripe/requests")

    def stripe_malformed(self) -> list[dict]:
        """Stripe objects listed broken by the fault profile: kind, id and the field broken."""
        return self._get("/stripe/malformed")

    def mutations(self) -> list[dict]:
        """Changes made at run time by the admin API and the fault profiles."""
        return self._get("/mutations")

    def requests(self) -> list[dict]:
        """Every vendor request received, with the version header sent and the status answered."""
        return self._get("/requests")

    def add_event(
        self,
        event_name: str,
        created_at: int,
        *,
        contact_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add an event for a contact, as `POST /events` would."""
        body: dict[str, Any] = {"event_name": event_name, "created_at": created_at}
        if contact_id:
            body["id"] = contact_id
        if user_id:
            body["user_id"] = user_id
        if metadata:
            body["metadata"] = dict(metadata)
        self._post("/events", body)

    def merge(self, lead_id: str, user_id: str) -> None:
        """Merge a lead into a user: the lead answers 404 from then on."""
        self._post("/merge", {"lead_id": lead_id, "user_id": user_id})

    def archive_contact(self, contact_id: str) -> None:
        """Archive a contact: no lookup or search finds it."""
        self._post(f"/contacts/{contact_id}/archive")

    def delete_contact(self, contact_id: str) -> None:
        """Delete a contact."""
        self._post(f"/contacts/{contact_id}/delete")

    def delete_customer(self, customer_id: str) -> None:
        """Delete a Stripe customer (emits `customer.deleted`)."""
        self._post(f"/stripe/customers/{customer_id}/delete")

    def remove_stripe_object(self, kind: str, object_id: str) -> None:
        """Make a Stripe object (`invoices`, ...) vanish: no list shows it, a fetch is 404."""
        self._post(f"/stripe/{kind}/{object_id}/remove")

    def set_subscription_status(self, subscription_id: str, status: str) -> dict:
        """Change a subscription's status; returns the Stripe event it emitted."""
        return self._post(f"/stripe/subscriptions/{subscription_id}/status", {"status": status})

    def advance_clock(self, seconds: int) -> int:
        """Move the sandbox clock forward; returns the new time (Unix seconds)."""
        return self._post("/clock", {"advance_seconds": seconds})["clock"]

    def set_faults(self, profile: str | None, **overrides: Any) -> dict:
        """Switch the fault profile (None for none), overriding any of its switches."""
        return self._post("/faults", {"profile": profile, "overrides": overrides})

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens, its credentials, its store and admin helper."""

    base_url: str
    intercom_token: str
    stripe_key: str
    store: Store
    state: SandboxState
    admin: SandboxAdmin
    port: int
    intercom_url: str = field(init=False)
    stripe_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.intercom_url = f"{self.base_url}/intercom"
        self.stripe_url = f"{self.base_url}/stripe"

    def env(self) -> dict[str, str]:
        """The variables that point the clients at this sandbox."""
        return {
            "INTERCOM_BASE_URL": self.intercom_url,
            "INTERCOM_ACCESS_TOKEN": self.intercom_token,
            "STRIPE_BASE_URL": self.stripe_url,
            "STRIPE_API_KEY": self.stripe_key,
        }


def build_dataset_store(
    dataset: str = "simple_shop",
    *,
    dirt: bool = True,
    event_window_days: int = 90,
    clock: datetime | None = None,
    users: int | None = None,
    seed: int = 0,
    events_file: Path | str | None = None,
    conversion_event: str | None = None,
    column_map: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
    signup: str = "first_event",
    n_companies: int | None = None,
) -> Store:
    """Load a dataset and build its store (what `running_sandbox` serves)."""
    from sandbox import datasets
    from sandbox.mapping import build_store

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if dataset != "events_file" and (events_file is not None or conversion_event is not None):
        raise ValueError(f"events_file and conversion_event go with events_file, not {dataset}")
    if cache_dir is None:
        from orchestration.settings import get_settings

        cache_dir = get_settings().cache_dir
    if dataset == "simple_shop":
        event_log = datasets.load_simple_shop(Path(cache_dir))
    elif dataset == "mobile_onboarding_2018":
        event_log = datasets.load_mobile_onboarding()
    elif dataset == "synthetic":
        from sandbox.synthetic import synthetic_event_log

        event_log = synthetic_event_log(users=users or 1000, seed=seed, cache_dir=Path(cache_dir))
    else:
        if events_file is None or conversion_event is None:
            raise ValueError("dataset events_file needs events_file and conversion_event")
        event_log = datasets.load_events_file(events_file, conversion_event, column_map)
    return build_store(
        event_log,
        dirt=dirt,
        event_window_days=event_window_days,
        clock=None if clock is None else int(clock.timestamp()),
        signup=signup,
        n_companies=n_companies,
        seed=seed,
    )


@contextmanager
def serve_store(
    store: Store,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    faults: str | None = None,
    rate_limit_per_minute: int | None = 10_000,
    strict_intercom_version: bool = False,
) -> Iterator[SandboxHandle]:
    """Serve an already built store on loopback in a background thread."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not 0 to 65535")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    base_url = f"http://{host}:{actual_port}"
    state = SandboxState(
        store,
        intercom_token=INTERCOM_TOKEN,
        stripe_key=STRIPE_KEY,
        faults=faults,
        rate_limit_per_minute=rate_limit_per_minute,
        base_url=base_url,
        strict_intercom_version=strict_intercom_version,
    )
    config = uvicorn.Config(
        create_app(state), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.005)
    admin = SandboxAdmin(base_url)
    handle = SandboxHandle(
        base_url=base_url,
        intercom_token=INTERCOM_TOKEN,
        stripe_key=STRIPE_KEY,
        store=store,
        state=state,
        admin=admin,
        port=actual_port,
    )
    log.info("sandbox %s listening on %s", store.dataset, base_url)
    try:
        yield handle
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_sandbox(
    dataset: str = "simple_shop",
    *,
    port: int = 0,
    faults: str | None = None,
    dirt: bool = True,
    event_window_days: int = 90,
    clock: datetime | None = None,
    rate_limit_per_minute: int | None = 10_000,
    users: int | None = None,
    seed: int = 0,
    events_file: Path | str | None = None,
    conversion_event: str | None = None,
    column_map: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
    signup: str = "first_event",
    n_companies: int | None = None,
    strict_intercom_version: bool = False,
) -> Iterator[SandboxHandle]:
    """Build the dataset's store and serve it for the duration of the block (see module doc)."""
    store = build_dataset_store(
        dataset,
        dirt=dirt,
        event_window_days=event_window_days,
        clock=clock,
        users=users,
        seed=seed,
        events_file=events_file,
        conversion_event=conversion_event,
        column_map=column_map,
        cache_dir=cache_dir,
        signup=signup,
        n_companies=n_companies,
    )
    with serve_store(
        store,
        port=port,
        faults=faults,
        rate_limit_per_minute=rate_limit_per_minute,
        strict_intercom_version=strict_intercom_version,
    ) as handle:
        yield handle
