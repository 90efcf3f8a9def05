"""Definitions the daemon test loads: a sensor that counts its ticks in its cursor, and two jobs.

The sensor appends `<cursor received> <cursor written>` to the file in `NEXTBEST_TEST_PROBE`
on every tick; on its very first tick (no cursor yet) it asks for two runs tagged as
write-backs, so the queue's tag rule can be observed.
"""

import os
import time
from pathlib import Path

import dagster as dg

WRITE_TAG = {"nextbest/intercom-write": "true"}
RUN_SECONDS = 3


@dg.op
def hold() -> None:
    """Keep the run busy long enough for runs to overlap when the queue lets them."""
    time.sleep(RUN_SECONDS)


# In the run's own process: a step subprocess per run would only slow the test down.
@dg.job(executor_def=dg.in_process_executor)
def write_job() -> None:
    """Stands in for a write-back run."""
    hold()


@dg.sensor(
    jobs=[write_job],
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def cursor_probe(context: dg.SensorEvaluationContext):
    """Count ticks in the cursor and write down what each tick received."""
    received = context.cursor
    written = str(int(received or 0) + 1)
    with Path(os.environ["NEXTBEST_TEST_PROBE"]).open("a") as probe:
        probe.write(f"{received or '-'} {written}\n")
    context.update_cursor(written)
    if received is None:
        yield dg.RunRequest(run_key="write-1", job_name="write_job", tags=WRITE_TAG)
        yield dg.RunRequest(run_key="write-2", job_name="write_job", tags=WRITE_TAG)


defs = dg.Definitions(jobs=[write_job], sensors=[cursor_probe])
