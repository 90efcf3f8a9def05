"""The asset and its check in Dagster, and a sensor tick that starts a scoped run."""

from __future__ import annotations

import json
import time

import dagster as dg
import httpx

from orchestration.activation import defs as activation_defs
from orchestration.activation.assets import failed_attempts_within_limit, intercom_next_best_actions
from orchestration.activation.scope import CONTACT_IDS_TAG, TRIGGER_TAG
from orchestration.activation.sensors import LIVE_JOB_NAME, build_live_sensor
from orchestration.resources import IntercomResource
from orchestration.warehouse import warehouse


def recommendations(sandbox, n=10):
    ids, externals = sandbox.contact_ids(), sandbox.external_ids()
    return [
        {
            "user_id": externals[k],
            "contact_id": ids[k],
            "action": "invite_team",
            "action_label": "Invite your team",
            "conversion_score": 0.2,
        }
        for k in range(n)
    ]


def materialize(instance, tags=None):
    return dg.materialize(
        [intercom_next_best_actions, failed_attempts_within_limit],
        instance=instance,
        resources={"intercom": IntercomResource()},
        tags=tags,
        raise_on_error=False,
    )


def check_passed(result) -> bool:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation.passed


def test_the_check_passes_a_clean_run_and_fails_one_with_a_404_in_ten(sandbox, recommend):
    instance = dg.DagsterInstance.ephemeral()
    recommend(recommendations(sandbox))
    clean = materialize(instance)
    assert clean.success
    assert check_passed(clean)
    (event,) = clean.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["contacts_attempted"].value == 10
    assert metadata["contacts_failed"].value == 0
    # One contact of ten changes and is gone: 1 failure in 1 attempt is above 1%.
    rows = recommendations(sandbox)
    rows[7]["action"] = "create_project"
    recommend(rows)
    sandbox.admin("POST", f"/contacts/{sandbox.contact_ids()[7]}/archive")
    failing = materialize(instance)
    assert failing.success
    assert not check_passed(failing)


def test_a_run_tagged_with_contacts_writes_only_those(sandbox, recommend):
    recommend(recommendations(sandbox))
    ids = sandbox.contact_ids()
    tags = {CONTACT_IDS_TAG: json.dumps([ids[1], ids[6]])}
    assert materialize(dg.DagsterInstance.ephemeral(), tags).success
    assert sorted(w["contact_id"] for w in sandbox.writes()) == sorted([ids[1], ids[6]])


def seed_raw_layer(path, sandbox):
    """The raw rows an earlier sync would have left: contacts and their events' times."""
    store = sandbox.state.store
    with warehouse(path) as con:
        for i, contact_id in enumerate(store.contacts.ids):
            payload = {"id": contact_id, "last_seen_at": int(store.contacts.last_seen_at[i])}
            con.execute(
                "insert into raw.intercom_contacts values (?, ?, ?, false, null, 's1', now())",
                [contact_id, int(store.contacts.updated_at[i]), json.dumps(payload)],
            )
            for name, created, _, event_id in store.contact_events(i):
                con.execute(
                    "insert into raw.intercom_events values "
                    "(?, ?, ?, null, null, ?, ?, '{}', 'api', 's1', now())",
                    [f"{contact_id}|{name}|{created}", event_id, contact_id, name, created],
                )


def post_event(sandbox, contact_id, name) -> int:
    """Post an event now (the sandbox's clock) and return its time."""
    body = {"event_name": name, "created_at": sandbox.state.store.now(), "id": contact_id}
    response = httpx.post(
        f"{sandbox.intercom_url}/events",
        json=body,
        headers={
            "Authorization": f"Bearer {sandbox.state.intercom_token}",
            "Intercom-Version": "2.14",
        },
    )
    assert response.status_code == 202
    return body["created_at"]


def test_a_completed_action_makes_the_sensor_start_a_run_for_just_that_contact(
    sandbox, recommend, env
):
    seed_raw_layer(env, sandbox)
    recommend(recommendations(sandbox))
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(instance).success
    sensor = build_live_sensor(60)
    ids = sandbox.contact_ids()

    # Nothing done yet: our own writes bumped updated_at, but nobody was active.
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert first.run_requests == []
    assert first.cursor

    post_event(sandbox, ids[3], "invite_team")
    post_event(sandbox, ids[4], "open_app")
    posted = post_event(sandbox, ids[5], "payment_done")
    # A contact updated in the server's current second waits for the next tick (a run could
    # not read it yet); a tick comes an interval later, so wait out the second.
    store = sandbox.state.store
    while store.now() <= posted:
        time.sleep(0.05)
    second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    (request,) = second.run_requests
    assert json.loads(request.tags[CONTACT_IDS_TAG]) == sorted([ids[3], ids[5]])
    assert request.tags[TRIGGER_TAG] == "action_completed,converted"
    assert request.run_key.startswith("live-")
    # The same tick evaluated again (say, after a restart) asks for the same run key.
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert again.run_requests[0].run_key == request.run_key
    # With the new cursor nothing is new any more.
    third = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=second.cursor))
    assert third.run_requests == []


def test_the_stage_defines_the_jobs_schedules_and_sensor_it_names(sandbox, env):
    defs = activation_defs()
    assert {s.name for s in defs.schedules} == {"hourly_incremental_sync", "weekly_retrain"}
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in defs.schedules)
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["completed_actions_sensor"].minimum_interval_seconds == 60
    assert sensors["completed_actions_sensor"].job_name == LIVE_JOB_NAME
    assert {j.name for j in defs.jobs} == {
        "full_refresh",
        "incremental_sync",
        "retrain",
        "live_update",
    }
