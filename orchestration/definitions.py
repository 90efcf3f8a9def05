"""The one entry point Dagster loads: every stage's definitions merged.

Loading does no I/O: each stage builds its definitions when Dagster asks for them.
"""

import dagster as dg

from orchestration import activation, ingest, models, transform


@dg.definitions
def defs() -> dg.Definitions:
    """All nextbest assets, checks, jobs, sensors and schedules."""
    stages = dg.Definitions.merge(ingest.defs(), transform.defs(), models.defs(), activation.defs())
    # DuckDB allows one writer at a time, and every stage writes the same warehouse file, so
    # the steps of a run execute one after another in the run's process.
    return dg.Definitions.merge(stages, dg.Definitions(executor=dg.in_process_executor))
