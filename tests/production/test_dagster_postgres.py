"""The production Dagster instance (`deploy/dagster/dagster.yaml`) on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from deploy.settings import DAGSTER_HOME_TEMPLATE
from tests.production.conftest import query

pytestmark = pytest.mark.postgres

HERE = Path(__file__).resolve().parent


def instance_env(dsn: dict[str, object]) -> dict[str, str]:
    """The variables `deploy/dagster/dagster.yaml` reads, pointing at the test database."""
    return {
        "DAGSTER_PG_HOST": str(dsn["host"]),
        "DAGSTER_PG_PORT": str(dsn["port"]),
        "DAGSTER_PG_USER": str(dsn["user"]),
        # Trust authentication ignores it, but Dagster's `env:` needs the variable set.
        "DAGSTER_PG_PASSWORD": str(dsn["password"]) or "unused",
        "DAGSTER_PG_DB": str(dsn["dbname"]),
    }


def copy_instance(target: Path, **overrides: object) -> Path:
    """A DAGSTER_HOME holding the production dagster.yaml, with top-level keys overridden."""
    target.mkdir(parents=True)
    config = yaml.safe_load((DAGSTER_HOME_TEMPLATE / "dagster.yaml").read_text())
    config.update(overrides)
    (target / "dagster.yaml").write_text(yaml.safe_dump(config))
    return target


def test_a_materialization_is_recorded_in_postgres_run_and_event_storage(
    tmp_path, pg_database, monkeypatch
):
    for name, value in instance_env(pg_database).items():
        monkeypatch.setenv(name, value)
    home = copy_instance(tmp_path / "dagster")

    @dg.asset
    def seed_numbers() -> list[int]:
        return [3, 4, 5]

    @dg.asset
    def sum_of_squares(seed_numbers: list[int]) -> int:
        return sum(n * n for n in seed_numbers)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [seed_numbers, sum_of_squares],
            instance=instance,
            resources={"io_manager": dg.mem_io_manager},
            tags={"nextbest/test": "materialize"},
        )
    assert result.success
    assert result.output_for_node("sum_of_squares") == 9 + 16 + 25

    # Read PostgreSQL directly: the run, its tag and both materializations are there.
    runs = query(pg_database, "select run_id, status, pipeline_name from runs")
    assert runs == [(result.run_id, "SUCCESS", "__ephemeral_asset_job__")]
    tags = query(pg_database, "select key, value from run_tags where run_id = %s", (result.run_id,))
    assert ("nextbest/test", "materialize") in tags
    materialized = query(
        pg_database,
        "select asset_key from event_logs where run_id = %s "
        "and dagster_event_type = 'ASSET_MATERIALIZATION' order by asset_key",
        (result.run_id,),
    )
    assert [json.loads(key) for (key,) in materialized] == [
        ["seed_numbers"],
        ["sum_of_squares"],
    ]
    # Nothing went to SQLite beside the yaml: storage is PostgreSQL only.
    assert not list(home.rglob("*.db"))


def start_daemon(home: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    workspace = home / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_file": {
                            "relative_path": str(HERE / "daemon_defs.py"),
                            "working_directory": str(HERE.parents[1]),
                        }
                    }
                ]
            }
        )
    )
    daemon = str(Path(sys.executable).with_name("dagster-daemon"))
    return subprocess.Popen(
        [daemon, "run", "-w", str(workspace)],
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except psycopg2.errors.UndefinedTable:
            value = None  # the daemon has not created Dagster's tables yet
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def probe_lines(probe: Path) -> list[tuple[str, str]]:
    if not probe.exists():
        return []
    return [tuple(line.split()) for line in probe.read_text().splitlines()]


@pytest.mark.slow
def test_queue_runs_one_write_back_at_a_time_and_the_sensor_cursor_survives_a_restart(
    tmp_path, pg_database
):
    env = instance_env(pg_database)
    probe = tmp_path / "probe.txt"
    env["NEXTBEST_TEST_PROBE"] = str(probe)
    log = tmp_path / "daemon.log"
    # Room for three runs at once, so that only the write-back tag rule can hold one back;
    # the queue is read every second instead of every five to keep the test short.
    concurrency = yaml.safe_load((DAGSTER_HOME_TEMPLATE / "dagster.yaml").read_text())[
        "concurrency"
    ]
    concurrency["runs"]["max_concurrent_runs"] = 3
    coordinator = {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    }
    first_home = copy_instance(
        tmp_path / "first", concurrency=concurrency, run_coordinator=coordinator
    )

    daemon = start_daemon(first_home, env, log)
    try:
        finished = wait_for(
            lambda: (
                rows
                if len(
                    rows := query(
                        pg_database,
                        "select start_time, end_time from runs where status = 'SUCCESS' "
                        "order by start_time",
                    )
                )
                == 2
                else None
            ),
            timeout=360,
            what="two successful write-back runs",
            log=log,
        )
    finally:
        stop_daemon(daemon)

    # Three runs could run at once, yet the second write-back started only after the first
    # had ended: the tag rule held it in the queue.
    (first_start, first_end), (second_start, _) = finished
    assert second_start >= first_end > first_start

    # The cursor the sensor wrote last, read from PostgreSQL's instigator table.
    lines_before = probe_lines(probe)
    assert lines_before[0] == ("-", "1")
    (body,) = query(
        pg_database, "select instigator_body from instigators where instigator_type = 'SENSOR'"
    )[0]
    state = json.loads(body)
    # Dagster keeps its pre-0.14 field names in storage: `job_name`, `job_specific_data`.
    assert state["origin"]["job_name"] == "cursor_probe"
    stored_cursor = state["job_specific_data"]["cursor"]
    # The last tick's cursor, or the one before when the daemon stopped between a tick and
    # its save.
    assert stored_cursor in {lines_before[-1][1], lines_before[-1][0]}
    assert int(stored_cursor) >= 1

    # A new daemon on a new DAGSTER_HOME folder: only PostgreSQL carries the cursor over.
    second_home = copy_instance(
        tmp_path / "second", concurrency=concurrency, run_coordinator=coordinator
    )
    daemon = start_daemon(second_home, env, log)
    try:
        wait_for(
            lambda: len(probe_lines(probe)) > len(lines_before),
            timeout=240,
            what="a sensor tick after the restart",
            log=log,
        )
    finally:
        stop_daemon(daemon)
    first_after = probe_lines(probe)[len(lines_before)]
    assert first_after == (stored_cursor, str(int(stored_cursor) + 1))
    # No second batch of runs: the restarted sensor knew it had already asked for them.
    assert query(pg_database, "select count(*) from runs") == [(2,)]
