"""`dbt build` on a small warehouse of hand-written raw rows, each row a rule's boundary.

Expected values are worked out by hand from the rows below (T is 2023-11-14 22:13:20 UTC).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from orchestration.warehouse import connect
from tests.transform.conftest import query
from tests.transform.raw import RawLayer

T = 1_700_000_000
DAY = 86_400
WEEK = 7 * DAY


def _world() -> RawLayer:
    raw = RawLayer()
    # u_1: sessions split one second past the 30-minute gap; a merged lead's event; two
    # Stripe customers (metadata, and e-mail only); pays one second before the window ends.
    raw.contact("C_PAT", external_id="u_1", email="Pat@Example.test", signed_up_at=T)
    raw.contact(
        "L1",
        email="lead@example.test",
        role="lead",
        signed_up_at=None,
        created_at=T - 500,
        deleted_reason="merged",
        merged_into_id="C_PAT",
    )
    raw.event("open", T, contact_id="C_PAT")
    raw.event("view_pricing", T + 100, contact_id="L1")
    raw.event("invite", T + 1800, contact_id="C_PAT")
    raw.event("open", T + 3601, contact_id="C_PAT")
    raw.customer("cus_A", email="pat@example.test", app_user_id="u_1")
    raw.customer("cus_B", email=" pat@example.TEST ")
    raw.charge("ch_u1", "cus_A", amount=4900, created=T + WEEK - 1)
    # u_late pays one second after the window; its later event sets the data's end.
    raw.contact("C_LATE", external_id="u_late", email="late@example.test", signed_up_at=T)
    raw.customer("cus_late", app_user_id="u_late")
    raw.charge("ch_late", "cus_late", amount=4900, created=T + WEEK + 1)
    raw.event("open", T + 30 * DAY, contact_id="C_LATE")
    # u_jpy pays 5000 yen; u_zero only has a $0 invoice; u_ref's charge is refunded in full
    # (through the refunds list); u_part's partly.
    raw.contact("C_JPY", external_id="u_jpy", signed_up_at=T)
    raw.customer("cus_jpy", app_user_id="u_jpy")
    raw.charge("ch_jpy", "cus_jpy", amount=5000, currency="jpy", created=T + 3600)
    raw.contact("C_ZERO", external_id="u_zero", signed_up_at=T)
    raw.customer("cus_zero", app_user_id="u_zero")
    raw.invoice("in_zero", "cus_zero", amount_paid=0, paid_at=T + 60, subscription="sub_z")
    raw.contact("C_REF", external_id="u_ref", signed_up_at=T)
    raw.customer("cus_ref", app_user_id="u_ref")
    raw.charge("ch_ref", "cus_ref", amount=5000, created=T + 120, refunded=False)
    raw.refund("re_ref", "ch_ref", amount=5000, created=T + 200)
    raw.contact("C_PART", external_id="u_part", signed_up_at=T)
    raw.customer("cus_part", app_user_id="u_part")
    raw.charge("ch_part", "cus_part", amount=5000, amount_refunded=1000, created=T + 130)
    # Two contacts share lee@example.test: the customer with that e-mail is ambiguous.
    raw.contact("C_LEE1", external_id="u_7", email="lee@example.test", signed_up_at=T)
    raw.contact("C_LEE2", email="LEE@example.test", role="lead", signed_up_at=T)
    raw.customer("cus_L", email="lee@example.test")
    raw.charge("ch_L", "cus_L", amount=4900, created=T + 10)
    # u_new signed up 29 days in: its window is open at the data's end (censored).
    raw.contact("C_NEW", external_id="u_new", signed_up_at=T + 29 * DAY)
    # u_old's events are complete only from a day after its sign-up.
    raw.contact("C_OLD", external_id="u_old", signed_up_at=T, covered_from=T + DAY)
    raw.event("open", T + 2 * DAY, contact_id="C_OLD")
    # An event of a contact the warehouse does not know.
    raw.event("open", T + 5, contact_id="C_GHOST")
    return raw


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dbt_build) -> Path:
    workdir = tmp_path_factory.mktemp("small_world")
    warehouse = workdir / "warehouse.duckdb"
    con = connect(warehouse)
    try:
        _world().write(con)
    finally:
        con.close()
    dbt_build(warehouse, workdir)
    return warehouse


def test_every_contact_but_the_merged_lead_is_a_user(world):
    users = {row[0] for row in query(world, "select user_id from marts.dim_users")}
    assert users == {
        "u_1", "u_late", "u_jpy", "u_zero", "u_ref", "u_part", "u_7", "C_LEE2", "u_new", "u_old",
    }  # fmt: skip


def test_a_session_splits_one_second_past_the_gap_not_at_it(world):
    rows = query(
        world,
        "select session_number, started_at, ended_at, n_events, session_id"
        " from marts.fct_sessions where user_id = 'u_1' order by session_number",
    )
    start = pd.Timestamp(T, unit="s")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (1, start, start + pd.Timedelta(seconds=1800), 3),
        (2, start + pd.Timedelta(seconds=3601), start + pd.Timedelta(seconds=3601), 1),
    ]
    assert rows[0][4] == hashlib.md5(f"u_1|{T}".encode()).hexdigest()


def test_the_merged_leads_event_is_in_the_users_journey(world):
    rows = query(
        world,
        "select event_name, step_number from marts.fct_user_journeys"
        " where user_id = 'u_1' order by step_number",
    )
    assert rows == [("open", 1), ("view_pricing", 2), ("invite", 3), ("open", 4)]


def test_conversions_follow_the_payment_rules_and_the_window_edges(world):
    rows = query(
        world,
        "select user_id, converted_within_window, is_censored, history_complete"
        " from marts.fct_conversion_labels",
    )
    converted = {r[0] for r in rows if r[1]}
    censored = {r[0] for r in rows if r[2]}
    incomplete = {r[0] for r in rows if not r[3]}
    assert converted == {"u_1", "u_jpy", "u_part"}
    assert censored == {"u_new"}
    assert incomplete == {"u_old"}
    late = query(
        world, "select days_to_convert from marts.fct_conversion_labels where user_id = 'u_late'"
    )
    assert late[0][0] == pytest.approx((WEEK + 1) / DAY)


def test_two_customers_link_to_one_user_and_an_ambiguous_email_links_to_none(world):
    links = query(
        world,
        "select customer_id, user_id, link_method, is_probable_duplicate"
        " from intermediate.int_customers__user_links where user_id = 'u_1' order by 1",
    )
    assert links == [("cus_A", "u_1", "metadata", False), ("cus_B", "u_1", "email", True)]
    ids = query(world, "select stripe_customer_ids from marts.dim_users where user_id = 'u_1'")
    assert ids == [("cus_A,cus_B",)]
    ambiguous = query(
        world,
        "select record_id, reason, n_candidates from intermediate.int_users__ambiguous_matches",
    )
    assert ambiguous == [("cus_L", "email_matches_several_contacts", 2)]


def test_a_jpy_charge_keeps_whole_yen(world):
    rows = query(
        world,
        "select currency, amount from intermediate.int_payments__first where user_id = 'u_jpy'",
    )
    assert [(c, float(a)) for c, a in rows] == [("jpy", 5000.0)]


def test_an_event_of_an_unknown_contact_is_reported(world):
    rows = query(
        world, "select contact_id, unresolved_reason from intermediate.int_events__unresolved"
    )
    assert rows == [("C_GHOST", "contact_unknown")]


def test_u1_snapshots_are_sessions_and_days_before_its_payment(world):
    rows = query(
        world,
        "select snapshot_kind, snapshot_epoch, n_events, n_action__view_pricing,"
        " converted_within_window, is_training"
        " from marts.fct_user_features where user_id = 'u_1' order by snapshot_epoch",
    )
    expected = [("day_boundary", T, 1, 0)]
    expected += [("session_end", T + 1800, 3, 1), ("session_end", T + 3601, 4, 1)]
    expected += [("day_boundary", T + k * DAY, 4, 1) for k in range(1, 7)]
    assert [r[:4] for r in rows] == expected
    assert all(r[4] and r[5] for r in rows)


def test_no_snapshot_counts_an_event_after_it(world):
    with_events = query(
        world,
        "select f.snapshot_id, f.user_id, f.snapshot_at, f.n_events from marts.fct_user_features f",
    )
    journeys = pd.DataFrame(
        query(world, "select user_id, occurred_at from marts.fct_user_journeys"),
        columns=["user_id", "occurred_at"],
    )
    assert with_events
    for _, user_id, snapshot_at, n_events in with_events:
        mine = journeys[journeys["user_id"] == user_id]
        assert n_events == int((mine["occurred_at"] <= snapshot_at).sum())


def test_snapshots_of_incomplete_or_censored_users_are_not_for_training(world):
    rows = query(
        world,
        "select user_id, bool_or(is_training) from marts.fct_user_features group by user_id",
    )
    training = {user for user, any_training in rows if any_training}
    assert "u_old" not in training
    assert "u_new" not in training
    assert {"u_1", "u_zero", "u_late"} <= training
