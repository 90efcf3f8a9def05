"""The write-back against a live sandbox: attributes, changed contacts only, audit and state."""

from __future__ import annotations

import math

import pytest

from orchestration.activation.assets import run_write_back
from orchestration.activation.settings import ActivationSettings
from orchestration.activation.writeback import WriteBackError
from orchestration.settings import get_settings

LABELS = {"invite_team": "Invite your team", "create_project": "Create a project"}


def rows_for(sandbox, n=10, action="invite_team", overrides=None):
    """Recommendations for the first `n` contacts of the sandbox."""
    ids, externals = sandbox.contact_ids(), sandbox.external_ids()
    rows = []
    for k in range(n):
        row = {
            "user_id": externals[k],
            "contact_id": ids[k],
            "action": action,
            "action_label": LABELS[action],
            "conversion_score": 0.1 + k / 100,
        }
        row.update((overrides or {}).get(k, {}))
        rows.append(row)
    return rows


def write_back(run_id, **settings):
    return run_write_back(run_id, get_settings(), ActivationSettings(**settings))


def successful_puts(sandbox):
    return [w for w in sandbox.writes() if w["status"] == 200]


def test_first_run_creates_the_attributes_and_writes_each_contact_once(sandbox, recommend, sql):
    recommend(rows_for(sandbox))
    numbers = write_back("run-1")
    assert numbers["attributes_created"] == 4
    types = {a["name"]: a["data_type"] for a in sandbox.state.store.data_attributes if a["custom"]}
    assert types == {
        "nb_next_action": "string",
        "nb_next_action_label": "string",
        "nb_conversion_score": "float",
        "nb_updated_at": "date",
    }
    ids = sandbox.contact_ids()[:10]
    assert sorted(w["contact_id"] for w in sandbox.writes()) == sorted(ids)
    current = sandbox.attributes()
    for k, contact_id in enumerate(ids):
        attributes = current[contact_id]
        assert attributes["nb_next_action"] == "invite_team"
        assert attributes["nb_next_action_label"] == "Invite your team"
        assert math.isclose(attributes["nb_conversion_score"], 0.1 + k / 100)
        # A date attribute holds midnight UTC of the write's day as Unix seconds.
        assert attributes["nb_updated_at"] % 86400 == 0
    audit = sql(
        "select status, http_status, run_id, dry_run, count(*) from "
        "activation.intercom_write_audit group by all"
    )
    assert audit == [("ok", 200, "run-1", False, 40)]
    state = sql(
        "select count(*), count(distinct contact_id) from activation.intercom_attribute_state"
    )
    assert state == [(40, 10)]


def test_a_second_run_with_nothing_changed_sends_no_request(sandbox, recommend, sql):
    recommend(rows_for(sandbox))
    write_back("run-1")
    requests_before = sandbox.state.requests["intercom"]
    numbers = write_back("run-2")
    assert sandbox.state.requests["intercom"] == requests_before
    assert numbers["contacts_unchanged"] == 10
    assert numbers["contacts_attempted"] == 0
    assert sql("select count(*) from activation.intercom_write_audit where run_id = 'run-2'") == [
        (0,)
    ]


def test_only_changed_contacts_are_written_and_converted_ones_are_cleared(sandbox, recommend, sql):
    recommend(rows_for(sandbox))
    write_back("run-1")
    ids = sandbox.contact_ids()
    changed = rows_for(
        sandbox,
        overrides={
            2: {"action": "create_project", "action_label": "Create a project"},
            5: {"status": "converted", "action": None, "action_label": None},
        },
    )
    recommend(changed)
    write_back("run-2")
    run2 = sandbox.writes()[10:]
    assert sorted(w["contact_id"] for w in run2) == sorted([ids[2], ids[5]])
    current = sandbox.attributes()
    assert current[ids[2]]["nb_next_action"] == "create_project"
    # The score did not change, so it was not sent again.
    sent = {w["contact_id"]: w["attributes"] for w in run2}
    assert set(sent[ids[2]]) == {"nb_next_action", "nb_next_action_label", "nb_updated_at"}
    assert ids[5] not in current
    assert sent[ids[5]] == dict.fromkeys(
        ["nb_next_action", "nb_next_action_label", "nb_conversion_score", "nb_updated_at"]
    )
    cleared = sql(
        "select attribute, old_value, new_value from activation.intercom_write_audit "
        "where run_id = 'run-2' and contact_id = ? order by attribute",
        [ids[5]],
    )
    assert [(a, n) for a, _, n in cleared] == [
        ("nb_conversion_score", None),
        ("nb_next_action", None),
        ("nb_next_action_label", None),
        ("nb_updated_at", None),
    ]
    assert cleared[1][1] == '"invite_team"'


def test_dry_run_writes_the_plan_to_the_audit_and_sends_nothing(sandbox, recommend, sql):
    recommend(rows_for(sandbox, n=3))
    numbers = write_back("dry-1", dry_run=True)
    assert sandbox.state.requests["intercom"] == 0
    assert numbers["contacts_attempted"] == 3
    assert sql(
        "select status, dry_run, count(*) from activation.intercom_write_audit group by all"
    ) == [("planned", True, 12)]
    assert sql("select count(*) from activation.intercom_attribute_state") == [(0,)]
    # The real run afterwards still writes everything the dry run planned.
    write_back("run-1")
    assert len(successful_puts(sandbox)) == 3


def test_bad_values_are_reported_per_contact_while_the_others_go_through(sandbox, recommend, sql):
    """FAILURE_MODES 13: a string over 255 characters and a NaN score."""
    ids = sandbox.contact_ids()
    recommend(
        rows_for(
            sandbox,
            overrides={1: {"action_label": "L" * 256}, 4: {"conversion_score": float("nan")}},
        )
    )
    numbers = write_back("run-1")
    written = {w["contact_id"] for w in sandbox.writes()}
    assert written == set(ids[:10]) - {ids[1], ids[4]}
    assert all(w["status"] == 200 for w in sandbox.writes())
    invalid = sql(
        "select contact_id, attribute, message from activation.intercom_write_audit "
        "where status = 'invalid' order by contact_id"
    )
    assert {(c, a) for c, a, _ in invalid} == {
        (ids[1], "nb_next_action_label"),
        (ids[4], "nb_conversion_score"),
    }
    assert any("256 characters" in m for _, _, m in invalid)
    assert numbers["contacts_failed"] == 2
    assert set(sandbox.attributes()) == written


def test_attribute_names_are_case_sensitive_and_a_wrong_type_stops_the_run(sandbox, recommend):
    """FAILURE_MODES 12: `NB_next_action` is another attribute; a mistyped one of ours fails."""
    store = sandbox.state.store
    store.create_data_attribute(
        {"name": "NB_next_action", "model": "contact", "data_type": "integer"}
    )
    recommend(rows_for(sandbox, n=2))
    write_back("run-1")
    names = {a["name"]: a["data_type"] for a in store.data_attributes if a["custom"]}
    assert names["NB_next_action"] == "integer"
    assert names["nb_next_action"] == "string"
    assert len(successful_puts(sandbox)) == 2


def test_an_attribute_of_ours_with_another_type_fails_before_any_contact_write(sandbox, recommend):
    sandbox.state.store.create_data_attribute(
        {"name": "nb_conversion_score", "model": "contact", "data_type": "string"}
    )
    recommend(rows_for(sandbox, n=2))
    with pytest.raises(WriteBackError, match=r"nb_conversion_score.*'string'.*'float'"):
        write_back("run-1")
    assert sandbox.writes() == []


def test_a_contact_deleted_mid_run_is_recorded_as_404_and_not_retried(sandbox, recommend, sql):
    ids = sandbox.contact_ids()
    recommend(rows_for(sandbox))
    sandbox.admin("POST", f"/contacts/{ids[3]}/delete")
    numbers = write_back("run-1")
    gone = sql(
        "select distinct status, http_status, message from activation.intercom_write_audit "
        "where contact_id = ?",
        [ids[3]],
    )
    assert gone == [("not_found", 404, "User Not Found")]
    assert set(sandbox.attributes()) == set(ids[:10]) - {ids[3]}
    assert numbers["contacts_failed"] == 1
    # 1 of 10 contacts failed: above 1%, so the check would fail this run.
    assert numbers["contacts_attempted"] == 10
    puts = len(sandbox.writes())
    write_back("run-2")
    assert len(sandbox.writes()) == puts


def test_a_429_storm_is_ridden_out_and_every_contact_ends_written(sandbox, recommend, sql):
    # Two of every three Intercom answers are 429s whose reset time has already passed.
    script = ["429_reset_past", "429_reset_past", "ok"]
    sandbox.admin("POST", "/faults", {"overrides": {"intercom_script": script}})
    recommend(rows_for(sandbox))
    numbers = write_back("run-1", concurrency=4)
    assert numbers["http_rate_limited"] >= 10
    statuses = sql(
        "select status, http_status, count(distinct contact_id) "
        "from activation.intercom_write_audit group by all"
    )
    ok = {c for (c,) in sql("select distinct contact_id from activation.intercom_attribute_state")}
    # Whatever the interleaving, a contact is either written (and in the sandbox) or recorded
    # as a 429 failure (and absent); a run without faults then completes the rest.
    assert {s for s, *_ in statuses} <= {"ok", "error"}
    assert set(sandbox.attributes()) == ok
    sandbox.admin("POST", "/faults", {"profile": "none"})
    write_back("run-2")
    assert set(sandbox.attributes()) == set(sandbox.contact_ids()[:10])
    assert len(successful_puts(sandbox)) == 10
