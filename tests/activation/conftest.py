"""Fixtures of the activation tests: a small live sandbox and hand-made recommendations."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest
import uvicorn

from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient
from orchestration.resources import IntercomResource, intercom_endpoint
from orchestration.settings import get_settings
from sandbox.app import SandboxState, create_app
from sandbox.datasets import EventLog
from sandbox.mapping import build_store

TOKEN = "tok-activation-tests"
N_USERS = 12
START = 1_700_000_000


def small_log() -> EventLog:
    """Twelve users who sign up and open the app; the last two pay."""
    rows = []
    for k in range(N_USERS):
        user = f"user-{k:02d}"
        rows.append((user, "signup", START + k * 60))
        rows.append((user, "open_app", START + k * 60 + 30))
        if k >= N_USERS - 2:
            rows.append((user, "payment_done", START + k * 60 + 50))
    frame = pd.DataFrame(rows, columns=["user_id", "event", "timestamp"])
    return EventLog(name="activation_tests", events=frame, conversion_event="payment_done")


class AnswerLog:
    """ASGI wrapper keeping the method, path and status of every answer the sandbox sent.

    The store records only the PUTs that reached the contact handler; a fault profile's
    scripted 429s and 5xx are answered before that, so they are counted here.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.answers: list[tuple[str, str, int]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def record(message) -> None:
            if message["type"] == "http.response.start":
                self.answers.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, record)


@dataclass
class Sandbox:
    """A running sandbox: its state, base URLs, its log of answers and an admin client."""

    state: SandboxState
    url: str
    log: AnswerLog

    def answers(self, method: str, path: str) -> list[int]:
        """Statuses of the Intercom answers to `method path`, in the order they were sent."""
        return [s for m, p, s in self.log.answers if m == method and p == f"/intercom{path}"]

    @property
    def intercom_url(self) -> str:
        return f"{self.url}/intercom"

    def admin(self, method: str, path: str, body: dict | None = None) -> object:
        response = httpx.request(method, f"{self.url}/_sandbox{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def writes(self) -> list[dict]:
        return self.admin("GET", "/writes")

    def attributes(self) -> dict[str, dict]:
        return self.admin("GET", "/attributes")

    def contact_ids(self) -> list[str]:
        return list(self.state.store.contacts.ids)

    def external_ids(self) -> list[str | None]:
        return list(self.state.store.contacts.external_ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox for the twelve users on a free port, stopped after the test."""
    store = build_store(small_log(), dirt=False, event_window_days=0)
    state = SandboxState(store, intercom_token=TOKEN, stripe_key="sk_test_activation")
    port = _free_port()
    log = AnswerLog(create_app(state))
    server = uvicorn.Server(uvicorn.Config(log, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("sandbox did not start within 10 s")
        time.sleep(0.02)
    try:
        yield Sandbox(state=state, url=f"http://127.0.0.1:{port}", log=log)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def env(nextbest_home: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings pointing at the sandbox and a fresh warehouse; returns the warehouse path."""
    monkeypatch.setenv("INTERCOM_BASE_URL", sandbox.intercom_url)
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", TOKEN)
    for name in ("NEXTBEST_ACTIVATION_DRY_RUN", "NEXTBEST_ACTIVATION_GOAL"):
        monkeypatch.delenv(name, raising=False)
    return nextbest_home / "warehouse.duckdb"


class FastRetries(IntercomResource):
    """The Intercom resource with waits of hundredths of a second between attempts.

    With the real steps a storm costs seconds per request (exponential back-off after a 5xx,
    up to half a second of jitter after a 429); the tests check how many attempts were made
    and what was recorded, not how long the client slept.
    """

    def client(self) -> IntercomClient:
        base_url, token = intercom_endpoint(get_settings())
        return IntercomClient(base_url, token, **self._retrying())

    def async_client(self, max_connections: int = 64) -> AsyncIntercomClient:
        base_url, token = intercom_endpoint(get_settings())
        return AsyncIntercomClient(
            base_url, token, max_connections=max_connections, **self._retrying()
        )

    def _retrying(self) -> dict:
        return {
            "max_attempts": self.max_attempts or 6,
            "initial_backoff": 0.01,
            "max_backoff": 0.05,
            "rate_limit_cap": 0.05,
        }


NBA_COLUMNS = (
    "goal varchar, user_id varchar, contact_id varchar, external_id varchar, status varchar, "
    "action varchar, action_label varchar, lift double, conversion_score double, "
    "alternatives varchar, reason varchar, model_version varchar, scored_at timestamptz"
)


def write_recommendations(warehouse: Path, rows: list[dict], goal: str = "everyone-7d") -> None:
    """Replace `ml.next_best_actions` with hand-made rows (the columns of docs/warehouse.md)."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists ml")
        con.execute(f"create or replace table ml.next_best_actions ({NBA_COLUMNS})")
        for row in rows:
            con.execute(
                "insert into ml.next_best_actions values "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [
                    goal,
                    row["user_id"],
                    row["contact_id"],
                    row.get("external_id", row["user_id"]),
                    row.get("status", "recommended"),
                    row.get("action"),
                    row.get("action_label"),
                    row.get("lift", 0.1),
                    row.get("conversion_score"),
                    json.dumps([]),
                    "hand-made",
                    "1",
                ],
            )


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of a query against the warehouse, opened read-only."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture
def recommend(env: Path):
    """Write hand-made rows into `ml.next_best_actions` of the test's warehouse."""
    return lambda rows, goal="everyone-7d": write_recommendations(env, rows, goal)


@pytest.fixture
def sql(env: Path):
    """Run a read-only query against the test's warehouse."""
    return lambda text, params=None: query(env, text, params)
