"""The schedules and the freshness checks on the raw tables, evaluated by Dagster."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from orchestration.activation.jobs import build_freshness_checks, build_jobs, build_schedules
from tests.documented import RAW_ASSET_KEYS

HOUR = 3600


def cron_ticks(cron: str, start: datetime, end: datetime) -> list[datetime]:
    """The minutes in [start, end) that a cron string of `*` and single numbers selects.

    Enough for the project's two schedules, and independent of Dagster's own cron code.
    """
    fields = cron.split()
    assert len(fields) == 5, cron
    assert all(f == "*" or f.isdigit() for f in fields), f"{cron}: only * and numbers handled"
    minute, hour, day, month, weekday = (None if f == "*" else int(f) for f in fields)
    ticks, at = [], start
    while at < end:
        # Cron counts Sunday as 0; Python's isoweekday counts it as 7.
        cron_weekday = at.isoweekday() % 7
        if (
            (minute is None or at.minute == minute)
            and (hour is None or at.hour == hour)
            and (day is None or at.day == day)
            and (month is None or at.month == month)
            and (weekday is None or cron_weekday == weekday)
        ):
            ticks.append(at)
        at += timedelta(minutes=1)
    return ticks


def test_the_sync_runs_every_hour_and_the_retrain_every_week_both_stopped_by_default():
    schedules = {s.name: s for s in build_schedules()}
    assert set(schedules) == {"hourly_incremental_sync", "weekly_retrain"}
    jobs = {job.name for job in build_jobs()}
    # Two weeks from a Monday: every tick in them, as cron itself would choose.
    start = datetime(2026, 1, 5, tzinfo=UTC)
    end = start + timedelta(days=14)
    for name, job, ticks, gap in (
        ("hourly_incremental_sync", "incremental_sync", 14 * 24, timedelta(hours=1)),
        ("weekly_retrain", "retrain", 2, timedelta(days=7)),
    ):
        schedule = schedules[name]
        assert schedule.job_name == job and job in jobs
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        assert schedule.execution_timezone == "UTC"
        found = cron_ticks(schedule.cron_schedule, start, end)
        assert len(found) == ticks, f"{name}: {schedule.cron_schedule}"
        assert all(b - a == gap for a, b in itertools.pairwise(found))


def test_the_incremental_sync_leaves_training_out_and_the_retrain_promotes_and_writes_back():
    # Stand-ins for one asset of each stage, chained as the pipeline chains them.
    chain = [
        ("raw/intercom_contacts", "ingest"),
        ("fct_user_features", "transform"),
        ("training_set", "ml"),
        ("conversion_model", "ml"),
        ("next_best_actions", "ml"),
        ("intercom_next_best_actions", "activation"),
    ]
    specs = [
        dg.AssetSpec(
            dg.AssetKey.from_user_string(key),
            group_name=group,
            deps=[dg.AssetKey.from_user_string(chain[k - 1][0])] if k else [],
        )
        for k, (key, group) in enumerate(chain)
    ]

    @dg.multi_asset(specs=specs, can_subset=True)
    def pipeline():
        raise NotImplementedError  # never run: only the selections are resolved

    defs = dg.Definitions(assets=[pipeline], jobs=build_jobs())
    graph = defs.resolve_asset_graph()

    def selected(job: str) -> set[str]:
        selection = next(j for j in build_jobs() if j.name == job).selection
        return {key.to_user_string() for key in selection.resolve(graph)}

    assert selected("incremental_sync") == {
        "raw/intercom_contacts",
        "fct_user_features",
        "next_best_actions",
        "intercom_next_best_actions",
    }
    # The retrain trains, then re-scores and writes back with whichever model won.
    assert selected("retrain") == {
        "training_set",
        "conversion_model",
        "next_best_actions",
        "intercom_next_best_actions",
    }


def freshness_defs() -> tuple[dg.Definitions, dg.AssetChecksDefinition]:
    checks = build_freshness_checks(max_age_hours=2)
    defs = dg.Definitions(
        assets=[dg.AssetSpec(dg.AssetKey.from_user_string(key)) for key in RAW_ASSET_KEYS],
        asset_checks=checks,
        jobs=[dg.define_asset_job("raw_freshness", selection=dg.AssetSelection.checks(*checks))],
    )
    return defs, checks


def loaded(instance: dg.DagsterInstance, table: str, hours_ago: float) -> None:
    """Record that a raw table was loaded `hours_ago` hours before now."""
    at = time.time() - hours_ago * HOUR
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=dg.AssetKey.from_user_string(table),
            metadata={"dagster/last_updated_timestamp": dg.MetadataValue.timestamp(at)},
        )
    )


def test_every_raw_table_has_a_freshness_check():
    _, checks = freshness_defs()
    targets = {key.asset_key.to_user_string() for c in checks for key in c.check_keys}
    assert targets == set(RAW_ASSET_KEYS)


@pytest.mark.parametrize(
    ("hours_ago", "passed"), [(1.0, True), (1.9, True), (2.1, False), (30.0, False)]
)
def test_a_raw_table_older_than_the_limit_fails_its_freshness_check(hours_ago, passed):
    defs, _ = freshness_defs()
    with dg.DagsterInstance.ephemeral() as instance:
        for table in RAW_ASSET_KEYS:
            loaded(instance, table, 0.5)
        loaded(instance, "raw/stripe_invoices", hours_ago)
        started = time.time()
        result = defs.resolve_job_def("raw_freshness").execute_in_process(instance=instance)
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(RAW_ASSET_KEYS)
    assert evaluations.pop("raw/stripe_invoices").passed is passed
    assert all(e.passed for e in evaluations.values())
    # The bound the check applied: two hours before it ran.
    bound = next(iter(evaluations.values())).metadata["dagster/freshness_lower_bound_timestamp"]
    assert started - 2 * HOUR - 1 <= bound.value <= time.time() - 2 * HOUR + 1


def test_a_raw_table_never_loaded_fails_its_freshness_check():
    defs, _ = freshness_defs()
    with dg.DagsterInstance.ephemeral() as instance:
        for table in RAW_ASSET_KEYS[1:]:
            loaded(instance, table, 0.5)
        result = defs.resolve_job_def("raw_freshness").execute_in_process(instance=instance)
    failed = {
        e.asset_key.to_user_string() for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert failed == {RAW_ASSET_KEYS[0]}
