"""The one entry point Dagster loads: every stage's definitions merged.

Loading does no I/O: each stage builds its definitions when Dagster asks for them.
"""

import dagster as dg

from orchestration import activation, ingest, models, transform


@dg.definitions
def defs() -> dg.Definitions:
    """All nextbest assets, checks, jobs, sensors and schedules."""
    return dg.Definitions.merge(ingest.defs(), transform.defs(), models.defs(), activation.defs())
