"""Planning: only changed contacts are written, cleared on conversion, bad values held back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import duckdb
import numpy as np
import pytest

from orchestration.activation.plan import Recommendation, plan_writes, primary_goal

TODAY = date(2026, 12, 3)
TODAY_SECONDS = "1796256000"  # 2026-12-03 00:00 UTC: 20790 days * 86400


def rec(contact, status="recommended", action="invite_team", label="Invite your team", score=0.5):
    return Recommendation(f"u-{contact}", contact, status, action, label, score)


def written(action="invite_team", label="Invite your team", score="0.5", at=TODAY_SECONDS):
    return {
        "nb_next_action": f'"{action}"',
        "nb_next_action_label": f'"{label}"',
        "nb_conversion_score": score,
        "nb_updated_at": at,
    }


def test_today_seconds_constant_is_midnight_utc():
    assert int(TODAY_SECONDS) == (TODAY - date(1970, 1, 1)).days * 86400


def test_a_new_contact_gets_all_four_attributes():
    plan = plan_writes([rec("c1", score=0.123456)], {}, TODAY)
    assert len(plan.writes) == 1
    assert plan.writes[0].body == {
        "nb_next_action": "invite_team",
        "nb_next_action_label": "Invite your team",
        "nb_conversion_score": 0.1235,
        "nb_updated_at": int(TODAY_SECONDS),
    }


def test_an_unchanged_contact_is_not_written_even_on_another_day():
    plan = plan_writes([rec("c1")], {"c1": written(at="1700000000")}, TODAY)
    assert plan.writes == []
    assert plan.unchanged == 1


def test_a_changed_action_sends_only_what_differs_and_the_date():
    state = {"c1": written(at="1700000000")}
    plan = plan_writes([rec("c1", action="create_project", label="Create a project")], state, TODAY)
    (write,) = plan.writes
    assert write.body == {
        "nb_next_action": "create_project",
        "nb_next_action_label": "Create a project",
        "nb_updated_at": int(TODAY_SECONDS),
    }
    olds = {c.attribute: c.old_value for c in write.changes}
    assert olds["nb_next_action"] == '"invite_team"'
    assert olds["nb_updated_at"] == "1700000000"


def test_a_converted_contact_is_cleared_and_a_never_written_one_is_left_alone():
    state = {"c1": written()}
    plan = plan_writes(
        [rec("c1", status="converted", action=None), rec("c2", status="converted", action=None)],
        state,
        TODAY,
    )
    (write,) = plan.writes
    assert write.contact_id == "c1"
    assert write.body == dict.fromkeys(
        ["nb_next_action", "nb_next_action_label", "nb_conversion_score", "nb_updated_at"]
    )
    assert plan.unchanged == 1


def test_a_bad_value_holds_back_only_its_contact():
    plan = plan_writes(
        [rec("c1", label="L" * 300), rec("c2", score=float("nan")), rec("c3")], {}, TODAY
    )
    assert [w.contact_id for w in plan.valid_writes] == ["c3"]
    invalid = {w.contact_id: sorted(w.invalid) for w in plan.invalid_writes}
    assert invalid == {"c1": ["nb_next_action_label"], "c2": ["nb_conversion_score"]}


def test_users_without_contact_duplicates_and_gone_contacts_are_counted_not_written():
    recs = [
        Recommendation("u-1", None, "recommended", "a", "A", 0.1),
        rec("c2"),
        Recommendation("u-3", "c2", "recommended", "b", "B", 0.2),
        rec("c4"),
        rec("c5"),
    ]
    plan = plan_writes(recs, {}, TODAY, gone={"c4"})
    assert [w.contact_id for w in plan.writes] == ["c5"]
    assert plan.without_contact == ["u-1"]
    assert plan.duplicated_contacts == ["c2"]
    assert plan.gone == 1


def test_a_contact_that_left_the_goal_is_cleared_only_in_a_full_run():
    state = {"c1": written(), "c2": written()}
    full = plan_writes([rec("c1")], state, TODAY, clear_missing=True)
    assert [(w.contact_id, w.status) for w in full.writes] == [("c2", "missing")]
    assert set(full.writes[0].body.values()) == {None}
    scoped = plan_writes([rec("c1")], state, TODAY)
    assert scoped.writes == []


def test_a_recommended_row_without_an_action_is_held_back_not_cleared_or_sent_empty():
    # A recommendation without an action is a broken row: clearing the contact's attributes
    # or writing "" would both replace a valid action with nothing and call it "set".
    state = {"c1": written(), "c2": written(), "c3": written()}
    recs = [rec("c1", action=None), rec("c2", action=""), rec("c3", action="  "), rec("c4")]
    plan = plan_writes(recs, state, TODAY)
    assert [w.contact_id for w in plan.valid_writes] == ["c4"]
    invalid = {w.contact_id: w.invalid for w in plan.invalid_writes}
    assert invalid == {
        "c1": {"nb_next_action": "a recommended row needs an action, found None"},
        "c2": {"nb_next_action": "a recommended row needs an action, found ''"},
        "c3": {"nb_next_action": "a recommended row needs an action, found '  '"},
    }
    assert plan.counts()["contacts_invalid"] == 3


def test_a_row_of_an_unknown_status_is_held_back_with_its_status():
    # ml.recommend writes five statuses; anything else would silently clear the contact.
    plan = plan_writes(
        [rec("c1", status="Recommended"), rec("c2", status=None)], {"c1": written()}, TODAY
    )
    assert plan.valid_writes == []
    reasons = {w.contact_id: w.invalid["nb_next_action"] for w in plan.invalid_writes}
    known = "recommended, converted, window_closed, no_supported_candidate, all_actions_done"
    assert reasons == {
        "c1": f"status 'Recommended' is not one of {known}",
        "c2": f"status None is not one of {known}",
    }


def test_a_score_outside_zero_to_one_is_held_back_and_the_bounds_are_accepted():
    # nb_conversion_score is a probability: 0 to 1 (docs/activation.md).
    recs = [rec("c1", score=1.7), rec("c2", score=-0.2), rec("c3", score=1), rec("c4", score=0)]
    plan = plan_writes(recs, {}, TODAY)
    assert {w.contact_id: w.body["nb_conversion_score"] for w in plan.valid_writes} == {
        "c3": 1.0,
        "c4": 0.0,
    }
    assert {w.contact_id: w.invalid for w in plan.invalid_writes} == {
        "c1": {"nb_conversion_score": "1.7 is not a probability between 0 and 1"},
        "c2": {"nb_conversion_score": "-0.2 is not a probability between 0 and 1"},
    }


def test_scores_of_any_number_type_are_rounded_to_four_decimals():
    recs = [rec("c1", score=np.float32(0.123456)), rec("c2", score=Decimal("0.98765432"))]
    plan = plan_writes(recs, {}, TODAY)
    assert [w.body["nb_conversion_score"] for w in plan.writes] == [0.1235, 0.9877]


def test_rows_without_a_goal_are_named_not_a_type_error():
    # Such rows belong to no goal: planning cannot tell whom they are for.
    con = duckdb.connect()
    con.execute("create schema ml")
    con.execute(
        "create table ml.next_best_actions as select * from (values"
        " ('everyone-7d', 'u1'), (null, 'u2'), (null, 'u3')) t(goal, user_id)"
    )
    with pytest.raises(ValueError, match=r"ml\.next_best_actions holds 2 rows without a goal"):
        primary_goal(con, "", "everyone-7d")
