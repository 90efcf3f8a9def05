"""The Dagster sensor of the live loop (see `live.py` for what a tick decides)."""

import dagster as dg
import duckdb

from orchestration.activation.live import LiveCursor, Tick, evaluate, warehouse_view
from orchestration.activation.settings import get_activation_settings
from orchestration.resources import IntercomResource
from orchestration.settings import get_settings
from orchestration.warehouse import connect

LIVE_SENSOR_NAME = "completed_actions_sensor"
LIVE_JOB_NAME = "live_update"


def tick(cursor_text: str | None) -> Tick:
    """Evaluate one tick from the stored cursor text, reading settings now.

    A warehouse another process is writing (DuckDB takes one writer) skips the tick with the
    cursor unchanged; the next tick catches up.
    """
    settings = get_settings()
    activation = get_activation_settings()
    cursor = LiveCursor.loads(cursor_text)
    if not settings.warehouse.exists():
        return Tick(cursor=cursor, skip_reason=f"no warehouse at {settings.warehouse} yet")
    try:
        con = connect(settings.warehouse, read_only=True)
    except duckdb.IOException as exc:
        return Tick(cursor=cursor, skip_reason=f"warehouse busy, retrying next tick: {exc}")
    try:
        latest, outstanding, known = warehouse_view(con)
    finally:
        con.close()
    if not outstanding:
        return Tick(cursor=cursor, skip_reason="no outstanding recommendations in Intercom yet")
    with IntercomResource().client() as client:
        return evaluate(
            cursor,
            client,
            latest_known=latest,
            outstanding=outstanding,
            known_events=known,
            conversion_events=activation.conversion_event_names,
            lookback=activation.sensor_lookback_seconds,
            server_now=client.clock.now,
        )


def build_live_sensor(interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that starts a scoped `live_update` run when users complete their action."""

    @dg.sensor(
        name=LIVE_SENSOR_NAME,
        job_name=LIVE_JOB_NAME,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Polls Intercom for contacts updated or seen since its cursor; when one completed "
            "its recommended action or converted, starts live_update for just those contacts."
        ),
    )
    def completed_actions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        result = tick(context.cursor)
        context.log.info(result.numbers())
        cursor = result.cursor.dumps()
        if not result.triggers:
            return dg.SensorResult(skip_reason=result.skip_reason, cursor=cursor)
        context.log.info(f"starting {LIVE_JOB_NAME} for {sorted(result.triggers)}")
        request = dg.RunRequest(run_key=result.run_key, tags=result.tags())
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return completed_actions_sensor


def tick_and_run(
    definitions: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None
) -> tuple[str | None, dg.ExecuteInProcessResult | None]:
    """Evaluate the sensor once and run what it asks for in this process.

    What the Dagster daemon does on each interval, for tests, benchmarks and one-off use: the
    run goes through `instance` with the sensor's tags, so it is recorded like a daemon's.

    Returns:
        The new cursor, and the run's result (None when the tick started nothing).
    """
    sensor = definitions.resolve_sensor_def(LIVE_SENSOR_NAME)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
    result = sensor.evaluate_tick(context)
    if not result.run_requests:
        return result.cursor, None
    (request,) = result.run_requests
    job = definitions.resolve_job_def(LIVE_JOB_NAME)
    tags = {**request.tags, "dagster/sensor_name": LIVE_SENSOR_NAME}
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
    run = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    return result.cursor, run
