"""A sync of Intercom contacts and events in a process of its own, for the interruption tests.

Run as `python sync_in_child.py FLUSH_EVERY` with the sandbox's variables and
`NEXTBEST_WAREHOUSE` in the environment; the test kills it part-way through the events read.
The clients come from the Dagster resource, as in a real run.
"""

from __future__ import annotations

import sys

from orchestration.ingest import intercom as sync
from orchestration.ingest.settings import IngestSettings
from orchestration.resources import IntercomResource
from orchestration.settings import get_settings
from orchestration.warehouse import warehouse


def main(flush_every: int) -> None:
    """Read contacts, then every contact's events, into the warehouse named by the settings."""
    settings = IngestSettings()
    resource = IntercomResource()
    with warehouse(get_settings().warehouse) as con:
        with resource.client() as client:
            sync.sync_contacts(client, con, sync_id="child", settings=settings)
        client = resource.async_client(max_connections=settings.event_concurrency)
        sync.sync_events(client, con, sync_id="child", settings=settings, flush_every=flush_every)


if __name__ == "__main__":
    main(int(sys.argv[1]))
