"""Activation: next best actions written back to Intercom (asset group `activation`).

Besides the write-back asset, this stage holds what runs the pipeline unattended: the jobs,
the hourly and weekly schedules, the freshness checks on the raw tables, and the sensor of the
live loop.
"""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the activation stage; settings are read now, when Dagster loads them."""
    from orchestration.activation.assets import (
        failed_attempts_within_limit,
        intercom_next_best_actions,
    )
    from orchestration.activation.jobs import build_freshness_checks, build_jobs, build_schedules
    from orchestration.activation.sensors import build_live_sensor
    from orchestration.activation.settings import get_activation_settings

    settings = get_activation_settings()
    freshness = build_freshness_checks(settings.raw_max_age_hours)
    return dg.Definitions(
        assets=[intercom_next_best_actions],
        asset_checks=[failed_attempts_within_limit, *freshness],
        jobs=build_jobs(),
        schedules=build_schedules(),
        sensors=[
            build_live_sensor(settings.sensor_interval_seconds),
            dg.build_sensor_for_freshness_checks(freshness_checks=freshness),
        ],
    )
