"""Fixtures of the ingestion tests: sandboxes on free ports, a warehouse per test, clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration.clients.intercom import AsyncIntercomClient, IntercomClient
from orchestration.clients.stripe import make_stripe_client
from orchestration.ingest import intercom as intercom_sync
from orchestration.ingest import stripe as stripe_sync
from orchestration.ingest.settings import IngestSettings
from orchestration.settings import get_settings
from orchestration.warehouse import connect, ensure_raw_tables
from sandbox.runner import SandboxHandle, running_sandbox

FAST = {"initial_backoff": 0.02, "max_backoff": 0.2}


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    # Datasets (simple_shop, synthetic logs) are cached across runs in the checkout's home.
    return get_settings().cache_dir


@dataclass
class Harness:
    """A sandbox, a warehouse and clients whose clocks follow the sandbox's."""

    sb: SandboxHandle
    con: duckdb.DuckDBPyConnection
    settings: IngestSettings
    path: Path

    def reopen(self) -> None:
        # After another process (the CLI, a killed sync) had the warehouse file to itself.
        self.con.close()
        self.con = connect(self.path)

    def offset(self) -> float:
        # The sandbox serves a dataset's time, not this machine's: pin the clients to it.
        return self.sb.store.now() - time.time()

    def intercom(self, **options: Any) -> IntercomClient:
        client = IntercomClient(self.sb.intercom_url, self.sb.intercom_token, **(FAST | options))
        client.clock.pin(self.offset())
        return client

    def async_intercom(self, **options: Any) -> AsyncIntercomClient:
        client = AsyncIntercomClient(
            self.sb.intercom_url, self.sb.intercom_token, **(FAST | options)
        )
        client.clock.pin(self.offset())
        return client

    def stripe(self, **options: Any) -> Any:
        client = make_stripe_client(self.sb.stripe_key, self.sb.stripe_url, **(FAST | options))
        client.retrying_http.clock.pin(self.offset())
        return client

    def sync_intercom(self, sync_id: str, **settings: Any) -> dict[str, Any]:
        chosen = self.settings.model_copy(update=settings)
        with self.intercom() as client:
            reports = {
                "contacts": intercom_sync.sync_contacts(
                    client, self.con, sync_id=sync_id, settings=chosen
                ),
                "companies": intercom_sync.sync_companies(
                    client, self.con, sync_id=sync_id, settings=chosen
                ),
                "links": intercom_sync.sync_contact_companies(client, self.con, sync_id=sync_id),
            }
        reports["events"] = intercom_sync.sync_events(
            self.async_intercom(), self.con, sync_id=sync_id, settings=chosen
        )
        return reports

    def sync_stripe(self, sync_id: str, **settings: Any) -> dict[str, Any]:
        chosen = self.settings.model_copy(update=settings)
        client = self.stripe()
        return {
            table: stripe_sync.sync_stripe_stream(
                client, self.con, table, sync_id=sync_id, settings=chosen
            )
            for table in stripe_sync.STRIPE_STREAMS
        }

    def count(self, sql: str, params: list | None = None) -> int:
        return self.con.execute(sql, params or []).fetchall()[0][0]


@pytest.fixture
def harness_factory(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., Any]]:
    """Start a sandbox (synthetic, 150 users, unless told) and a fresh warehouse for it."""
    opened: list[Any] = []

    @contextmanager
    def make(dataset: str = "synthetic", *, db: str = "warehouse.duckdb", **kwargs: Any):
        kwargs.setdefault("cache_dir", cache_dir)
        if dataset == "synthetic":
            kwargs.setdefault("users", 150)
            kwargs.setdefault("seed", 1)
        # As a strict server would, the sandbox refuses Intercom requests without the version.
        kwargs.setdefault("strict_intercom_version", True)
        with running_sandbox(dataset, port=0, **kwargs) as sb:
            con = connect(tmp_path / db)
            ensure_raw_tables(con)
            settings = IngestSettings().model_copy(
                update={"scroll_busy_wait_seconds": 1.2, "event_concurrency": 8}
            )
            harness = Harness(sb, con, settings, tmp_path / db)
            try:
                yield harness
            finally:
                harness.con.close()

    yield make
    for item in opened:  # pragma: no cover - nothing is left open by `make`
        item.close()


def table_rows(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> list[tuple]:
    """The rows of a raw table without load bookkeeping, sorted, for comparisons."""
    return sorted(con.execute(f"select {columns} from raw.{table}").fetchall())
