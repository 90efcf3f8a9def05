"""The write-back against a live sandbox: attributes, changed contacts only, audit and state."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import pytest

from orchestration.activation.assets import run_write_back
from orchestration.activation.settings import ActivationSettings
from orchestration.activation.writeback import WriteBackError
from orchestration.clients.intercom import AsyncIntercomClient
from orchestration.resources import IntercomResource
from orchestration.settings import get_settings
from tests.activation.conftest import FastRetries

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


def write_back(run_id, intercom: IntercomResource | None = None, **settings):
    return run_write_back(run_id, get_settings(), ActivationSettings(**settings), intercom=intercom)


def today_midnight() -> int:
    """Unix seconds of midnight UTC today: what a date attribute written today holds."""
    now = datetime.now(UTC)
    return int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp())


def expected_attributes(k: int, label: str = "Invite your team") -> dict:
    """What contact `k` of `rows_for` holds after a successful write today."""
    return {
        "nb_next_action": "invite_team",
        "nb_next_action_label": label,
        "nb_conversion_score": pytest.approx(0.1 + k / 100),
        "nb_updated_at": today_midnight(),
    }


ATTRIBUTES = ("nb_conversion_score", "nb_next_action", "nb_next_action_label", "nb_updated_at")
"""Our attribute names in the order `order by attribute` returns them."""


def audit_rows(sql, run_id):
    return sql(
        "select contact_id, attribute, status, http_status from activation.intercom_write_audit "
        "where run_id = ? order by contact_id, attribute",
        [run_id],
    )


def all_rows(contacts, status, http_status):
    """The audit rows of contacts whose every attribute ended the same way."""
    return [(c, a, status, http_status) for c in sorted(contacts) for a in ATTRIBUTES]


def create_our_attributes(sandbox):
    """Our four attributes, already defined in the workspace with the types the issue names."""
    for name, data_type in (
        ("nb_next_action", "string"),
        ("nb_next_action_label", "string"),
        ("nb_conversion_score", "float"),
        ("nb_updated_at", "date"),
    ):
        sandbox.state.store.create_data_attribute(
            {"name": name, "model": "contact", "data_type": data_type}
        )


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


def test_bad_values_are_reported_per_contact_while_the_others_go_through(
    sandbox, recommend, sql, env
):
    """FAILURE_MODES 13: a string over 255 characters, a NaN score, an object and a list."""
    ids = sandbox.contact_ids()
    recommend(
        rows_for(
            sandbox,
            overrides={1: {"action_label": "L" * 256}, 4: {"conversion_score": float("nan")}},
        )
    )
    # Columns whose type drifted upstream reach the write-back as a dict and a list.
    with duckdb.connect(str(env)) as con:
        con.execute(
            "alter table ml.next_best_actions alter action_label set data type "
            "union(text varchar, obj struct(text varchar)) using union_value(text := action_label)"
        )
        con.execute(
            "alter table ml.next_best_actions alter conversion_score set data type "
            "union(num double, seq double[]) using union_value(num := conversion_score)"
        )
        con.execute(
            "update ml.next_best_actions set action_label = union_value(obj := {'text': 'Invite'}) "
            "where contact_id = ?",
            [ids[6]],
        )
        con.execute(
            "update ml.next_best_actions set conversion_score = union_value(seq := [0.1, 0.2]) "
            "where contact_id = ?",
            [ids[7]],
        )
    numbers = write_back("run-1")
    bad = {
        ids[1]: "nb_next_action_label",
        ids[4]: "nb_conversion_score",
        ids[6]: "nb_next_action_label",
        ids[7]: "nb_conversion_score",
    }
    good = [k for k in range(10) if ids[k] not in bad]
    assert sorted(w["contact_id"] for w in sandbox.writes()) == sorted(ids[k] for k in good)
    assert all(w["status"] == 200 for w in sandbox.writes())
    # The good contacts hold exactly what was recommended; the bad ones were left untouched.
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in good}
    rows = sql(
        "select contact_id, attribute, status, http_status, message "
        "from activation.intercom_write_audit order by contact_id, attribute"
    )
    for contact_id, attribute, status, http_status, message in rows:
        if contact_id not in bad:
            assert (status, http_status, message) == ("ok", 200, None)
        elif attribute == bad[contact_id]:
            assert (status, http_status) == ("invalid", None)
        else:
            # The contact's valid values are not sent alone: half a recommendation (an action
            # without its label) would be worse than the old one.
            assert (status, http_status) == ("not_sent", None)
            assert message == f"not sent: invalid value for {bad[contact_id]}"
    assert len(rows) == 40
    invalid = {c: m for c, a, s, _, m in rows if s == "invalid"}
    assert set(invalid) == set(bad)
    assert "256 characters" in invalid[ids[1]]
    assert "nan" in invalid[ids[4]] and "finite" in invalid[ids[4]]
    assert "dict" in invalid[ids[6]]
    assert "list" in invalid[ids[7]]
    assert numbers["contacts_failed"] == 4


def test_line_breaks_and_control_characters_are_refused_counted_and_never_sent(
    sandbox, recommend, sql
):
    """Intercom shows a string attribute on one line: such a value stays out of the request."""
    ids = sandbox.contact_ids()
    recommend(
        rows_for(
            sandbox,
            overrides={2: {"action_label": "Choose\ndelivery"}, 5: {"action": "invite_team\t"}},
        )
    )
    numbers = write_back("run-1")
    good = [k for k in range(10) if k not in (2, 5)]
    assert sorted(w["contact_id"] for w in sandbox.writes()) == sorted(ids[k] for k in good)
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in good}
    refused = sql(
        "select contact_id, attribute, status, new_value, message "
        "from activation.intercom_write_audit where status <> 'ok' order by contact_id, attribute"
    )
    # "Choose" is 6 characters, so the line break is the 7th of 15; the tab ends the 12
    # characters of "invite_team\t". The audit keeps the refused value JSON-escaped.
    expected = {
        (ids[2], "nb_next_action_label"): (
            "invalid",
            '"Choose\\ndelivery"',
            "string holds 1 line-break or control character (U+000A at character 7 of 15); "
            "Intercom shows one line of text",
        ),
        (ids[5], "nb_next_action"): (
            "invalid",
            '"invite_team\\t"',
            "string holds 1 line-break or control character (U+0009 at character 12 of 12); "
            "Intercom shows one line of text",
        ),
    }
    for contact_id, attribute, status, new_value, message in refused:
        if (contact_id, attribute) in expected:
            assert (status, new_value, message) == expected[contact_id, attribute]
        else:
            bad = "nb_next_action_label" if contact_id == ids[2] else "nb_next_action"
            assert (status, message) == ("not_sent", f"not sent: invalid value for {bad}")
    assert len(refused) == 8
    assert (numbers["contacts_invalid"], numbers["contacts_failed"]) == (2, 2)
    assert (numbers["rows_invalid"], numbers["rows_not_sent"]) == (2, 6)


def test_attribute_names_are_case_sensitive_and_the_first_write_is_read_back(
    sandbox, recommend, sql
):
    """FAILURE_MODES 12: `NB_next_action` is another attribute, and stays off the contacts."""
    store = sandbox.state.store
    store.create_data_attribute(
        {"name": "NB_next_action", "model": "contact", "data_type": "integer"}
    )
    recommend(rows_for(sandbox, n=2))
    write_back("run-1")
    names = {a["name"]: a["data_type"] for a in store.data_attributes if a["custom"]}
    assert names["NB_next_action"] == "integer"
    assert names["nb_next_action"] == "string"
    ids = sandbox.contact_ids()[:2]
    assert audit_rows(sql, "run-1") == all_rows(ids, "ok", 200)
    assert sandbox.attributes() == {ids[0]: expected_attributes(0), ids[1]: expected_attributes(1)}
    assert all("NB_next_action" not in w["attributes"] for w in sandbox.writes())
    assert len(successful_puts(sandbox)) == 2
    # One read-back, of the first contact written (the plan goes in contact id order).
    first, second = sorted(ids)
    assert sandbox.answers("GET", f"/contacts/{first}") == [200]
    assert sandbox.answers("GET", f"/contacts/{second}") == []


def test_an_attribute_of_ours_with_another_type_fails_before_any_contact_write(
    sandbox, recommend, sql
):
    """FAILURE_MODES 12: a mistyped attribute of ours would reject every write."""
    store = sandbox.state.store
    store.create_data_attribute(
        {"name": "nb_conversion_score", "model": "contact", "data_type": "string"}
    )
    recommend(rows_for(sandbox, n=2))
    with pytest.raises(WriteBackError, match=r"nb_conversion_score.*'string'.*'float'"):
        write_back("run-1")
    assert sandbox.writes() == []
    assert [a for a in sandbox.log.answers if a[0] == "PUT"] == []
    # No contact was attempted, so there is nothing to audit and nothing on any contact.
    assert sql("select count(*) from activation.intercom_write_audit") == [(0,)]
    assert sql("select count(*) from activation.intercom_attribute_state") == [(0,)]
    assert sandbox.attributes() == {}
    types = {a["name"]: a["data_type"] for a in store.data_attributes if a["custom"]}
    assert types["nb_conversion_score"] == "string"


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
    # Exactly one PUT reached the sandbox for it: a 404 is final, never retried.
    puts = [w for w in sandbox.writes() if w["contact_id"] == ids[3]]
    assert [w["status"] for w in puts] == [404]
    assert sandbox.answers("PUT", f"/contacts/{ids[3]}") == [404]
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in range(10) if k != 3}
    assert numbers["contacts_failed"] == 1
    # 1 of 10 contacts failed: above 1%, so the check would fail this run.
    assert numbers["contacts_attempted"] == 10
    puts = len(sandbox.writes())
    write_back("run-2")
    assert len(sandbox.writes()) == puts


def test_a_429_storm_shorter_than_the_retry_budget_ends_with_every_contact_written(
    sandbox, recommend, sql
):
    # Each request meets two 429s (reset already past) before it gets through; sent one at a
    # time, every request spends 3 of its 6 attempts.
    script = ["429_reset_past", "429_reset_past", "ok"]
    sandbox.admin("POST", "/faults", {"overrides": {"intercom_script": script}})
    recommend(rows_for(sandbox))
    numbers = write_back("run-1", intercom=FastRetries(), concurrency=1)
    ids = sandbox.contact_ids()[:10]
    assert audit_rows(sql, "run-1") == all_rows(ids, "ok", 200)
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in range(10)}
    for contact_id in ids:
        assert sandbox.answers("PUT", f"/contacts/{contact_id}") == [429, 429, 200]
    # 16 requests got through (list and 4 creates of attributes, 10 PUTs, 1 read-back), each
    # after two 429s.
    statuses = [s for _, path, s in sandbox.log.answers if path.startswith("/intercom/")]
    assert (statuses.count(200), statuses.count(429)) == (16, 32)
    # The contact client's own count: 10 PUTs and the read-back, two 429s and retries each.
    assert (numbers["http_rate_limited"], numbers["http_retries"]) == (22, 22)


def test_under_a_concurrent_429_storm_a_contact_ends_written_or_failed_with_429(
    sandbox, recommend, sql
):
    # Four at once with three attempts each: which contacts spend their budget depends on
    # the interleaving, so the test checks what must hold for every contact.
    script = ["429_reset_past", "429_reset_past", "ok"]
    sandbox.admin("POST", "/faults", {"overrides": {"intercom_script": script}})
    recommend(rows_for(sandbox))
    numbers = write_back("run-1", intercom=FastRetries(max_attempts=3), concurrency=4)
    ids = sandbox.contact_ids()[:10]
    rows = audit_rows(sql, "run-1")
    assert len(rows) == 40
    ended = {c: (s, h) for c, _, s, h in rows}
    assert set(ended.values()) <= {("ok", 200), ("error", 429)}
    for contact_id in ids:
        answers = sandbox.answers("PUT", f"/contacts/{contact_id}")
        if ended[contact_id] == ("ok", 200):
            assert answers[-1] == 200 and set(answers[:-1]) <= {429} and len(answers) <= 3
        else:
            assert answers == [429, 429, 429], "a failed contact must have spent its budget"
    written = {c for c, (s, _) in ended.items() if s == "ok"}
    assert sandbox.attributes() == {
        ids[k]: expected_attributes(k) for k in range(10) if ids[k] in written
    }
    contact_429s = [
        s for m, p, s in sandbox.log.answers if p.startswith("/intercom/contacts/") and s == 429
    ]
    assert numbers["http_rate_limited"] == len(contact_429s)
    # A run without faults completes the rest, and only the rest.
    sandbox.admin("POST", "/faults", {"profile": "none"})
    puts_before = len(sandbox.writes())
    write_back("run-2")
    assert sorted(w["contact_id"] for w in sandbox.writes()[puts_before:]) == sorted(
        set(ids) - written
    )
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in range(10)}


def test_server_errors_on_put_are_retried_and_every_contact_ends_written(sandbox, recommend, sql):
    # The `server_errors` profile: every request meets a 503 with an HTML body, then a 500
    # with an error list, then gets through.
    sandbox.admin("POST", "/faults", {"profile": "server_errors"})
    recommend(rows_for(sandbox, n=5))
    numbers = write_back("run-1", intercom=FastRetries(), concurrency=1)
    ids = sandbox.contact_ids()[:5]
    for contact_id in ids:
        assert sandbox.answers("PUT", f"/contacts/{contact_id}") == [503, 500, 200]
    assert audit_rows(sql, "run-1") == all_rows(ids, "ok", 200)
    assert sandbox.attributes() == {ids[k]: expected_attributes(k) for k in range(5)}
    # Each PUT reached the store once: the failed attempts never touched the contact.
    assert sorted(w["contact_id"] for w in sandbox.writes()) == sorted(ids)
    # 5 PUTs and 1 read-back, two retries each.
    assert numbers["http_retries"] == 12


def test_a_failed_read_back_still_records_every_attempt_then_fails(sandbox, recommend, sql):
    create_our_attributes(sandbox)
    ids = sorted(sandbox.contact_ids()[:3])
    # With three attempts a request: the attribute list gets through, the first PUT meets
    # three 500s (an error), the second PUT gets through, its read-back meets three 503s.
    script = ["ok"] + ["500_json"] * 3 + ["ok"] + ["503_html"] * 3
    sandbox.admin("POST", "/faults", {"overrides": {"intercom_script": script}})
    recommend(rows_for(sandbox, n=3))
    with pytest.raises(WriteBackError, match=rf"{ids[1]} was written but could not be read back"):
        write_back("run-1", intercom=FastRetries(max_attempts=3), concurrency=1)
    assert sandbox.answers("PUT", f"/contacts/{ids[0]}") == [500, 500, 500]
    assert sandbox.answers("PUT", f"/contacts/{ids[1]}") == [200]
    assert sandbox.answers("GET", f"/contacts/{ids[1]}") == [503, 503, 503]
    assert sandbox.answers("PUT", f"/contacts/{ids[2]}") == []
    # Both attempts are in the audit, and the accepted write is in the state table.
    assert audit_rows(sql, "run-1") == all_rows([ids[0]], "error", 500) + all_rows(
        [ids[1]], "ok", 200
    )
    state = sql("select distinct contact_id from activation.intercom_attribute_state")
    assert state == [(ids[1],)]
    k = sandbox.contact_ids().index(ids[1])
    assert sandbox.attributes() == {ids[1]: expected_attributes(k)}
    # The next run sends what is missing and does not repeat the recorded write.
    sandbox.admin("POST", "/faults", {"profile": "none"})
    write_back("run-2")
    assert sorted(w["contact_id"] for w in sandbox.writes()[1:]) == [ids[0], ids[2]]


def test_an_unexpected_exception_on_one_contact_keeps_the_others_written_then_fails(
    sandbox, recommend, sql, monkeypatch
):
    ids = sandbox.contact_ids()[:5]
    broken, others = ids[2], sorted(ids[:2] + ids[3:])
    recommend(rows_for(sandbox, n=5))
    send = AsyncIntercomClient.update_contact

    async def update_contact(self, contact_id, custom_attributes):
        if contact_id == broken:
            raise TypeError("unsupported operand")
        return await send(self, contact_id, custom_attributes)

    with monkeypatch.context() as patched:
        patched.setattr(AsyncIntercomClient, "update_contact", update_contact)
        with pytest.raises(WriteBackError, match=rf"{broken} failed with TypeError"):
            write_back("run-1", concurrency=2)
    # The writes Intercom accepted are in the audit and the state; the broken one is an error.
    expected = all_rows(others, "ok", 200) + all_rows([broken], "error", None)
    assert audit_rows(sql, "run-1") == sorted(expected)
    message = sql(
        "select distinct message from activation.intercom_write_audit where contact_id = ?",
        [broken],
    )
    assert message == [("TypeError: unsupported operand",)]
    state = sql("select distinct contact_id from activation.intercom_attribute_state order by 1")
    assert state == [(c,) for c in others]
    # The next run sends only the contact that failed.
    puts = len(sandbox.writes())
    write_back("run-2")
    assert [w["contact_id"] for w in sandbox.writes()[puts:]] == [broken]
