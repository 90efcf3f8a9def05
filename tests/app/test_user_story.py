"""`nextbest user`: one user's story, found by any of its ids, with clear errors otherwise."""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.user_story import UnknownUserError, load_story, render_story


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for schema in ("marts", "ml"):
        con.execute(f"create schema {schema}")
    con.execute(
        "create table marts.dim_users as select 'u1' as user_id, 'c-1' as contact_id,"
        " 'ext-1' as external_id, 'a@b.test' as email, 'user' as role,"
        " timestamp '2024-01-01 10:00:00' as signed_up_at, true as history_complete"
    )
    con.execute(
        "create table marts.fct_sessions as select * from (values"
        " ('s1', 'u1', 1, timestamp '2024-01-01 10:00:00', 2),"
        " ('s2', 'u1', 2, timestamp '2024-01-02 09:00:00', 1))"
        " t(session_id, user_id, session_number, started_at, n_events)"
    )
    con.execute(
        "create table marts.fct_user_journeys as select * from (values"
        " ('e1', 'u1', 'signup', 's1', 1), ('e2', 'u1', 'invite', 's1', 2),"
        " ('e3', 'u1', 'report', 's2', 3))"
        " t(event_id, user_id, event_name, session_id, step_number)"
    )
    con.execute(
        "create table marts.fct_conversion_labels as select 'u1' as user_id,"
        " null::timestamp as first_payment_at, null::integer as days_to_convert"
    )
    con.execute(
        "create table ml.action_catalogue as select * from (values ('invite'), ('report'),"
        " ('billing')) t(action)"
    )
    alternatives = json.dumps([{"action": "export", "label": "Export", "lift": 0.01}])
    con.execute(
        "create table ml.next_best_actions as select 'everyone-7d' as goal, 'u1' as user_id,"
        " 'recommended' as status, 'billing' as action, 'Billing' as action_label,"
        " 0.05 as lift, 0.2 as conversion_score, ? as alternatives, 'why' as reason",
        [alternatives],
    )
    return con


@pytest.mark.parametrize("ident", ["u1", "ext-1", "c-1"])
def test_a_user_is_found_by_user_contact_or_external_id(con, ident: str) -> None:
    story = load_story(con, ident)
    assert story.profile["user_id"] == "u1"
    assert [s["session_id"] for s in story.sessions] == ["s1", "s2"]
    assert [e["event_name"] for e in story.journey] == ["signup", "invite", "report"]
    # Completed actions are the catalogue actions in the journey: signup is not one.
    assert story.completed_actions == ["invite", "report"]
    assert story.recommendation["action"] == "billing"


def test_an_unknown_user_or_goal_is_reported_by_name(con) -> None:
    with pytest.raises(UnknownUserError, match="'nobody'"):
        load_story(con, "nobody")
    with pytest.raises(UnknownUserError, match="unknown goal 'paid-30d'"):
        load_story(con, "u1", goal="paid-30d")


def test_a_warehouse_without_marts_names_the_table_the_file_and_the_commands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as empty, pytest.raises(RuntimeError) as raised:
        load_story(empty, "u1")
    message = str(raised.value)
    assert f"no table marts.dim_users in {path}:" in message
    assert "`make demo` (or the job `full_refresh` in `make ui`)" in message
    assert "dbt build" not in message
    # With the raw layer loaded, dbt alone builds the marts (the command docs/models.md gives).
    with duckdb.connect(str(path)) as raw_only:
        raw_only.execute("create schema raw")
        raw_only.execute("create table raw.events (id varchar)")
        raw_only.execute("create table raw.contacts (id varchar)")
        with pytest.raises(RuntimeError) as raised:
            load_story(raw_only, "u1")
    assert "raw layer is loaded (2 tables)" in str(raised.value)
    assert "`.venv/bin/dbt build --project-dir . --profiles-dir .`" in str(raised.value)


def test_without_a_goal_the_primary_goal_s_recommendation_is_shown(con) -> None:
    # A second goal whose name sorts first, recommending something else.
    con.execute(
        "insert into ml.next_best_actions select 'a-trial-3d', 'u1', 'recommended', 'report',"
        " 'Report', 0.09, 0.4, '[]', 'why not'"
    )
    assert load_story(con, "u1", primary="everyone-7d").recommendation["action"] == "billing"
    assert load_story(con, "u1", primary="a-trial-3d").recommendation["action"] == "report"
    # An explicit goal wins; an unknown primary falls back to the first goal by name.
    assert (
        load_story(con, "u1", "everyone-7d", primary="a-trial-3d").recommendation["action"]
        == "billing"
    )
    assert load_story(con, "u1", primary="gone").recommendation["action"] == "report"


def test_an_id_several_users_share_is_reported_with_their_user_ids_not_resolved(con) -> None:
    # Two users on one Intercom contact (a lead merged into a user, a shared login): the
    # contact id names neither of them, so the story of an arbitrary one must not be shown.
    con.execute(
        "insert into marts.dim_users select 'u2', 'c-1', 'ext-2', 'c@d.test', 'user',"
        " timestamp '2024-01-03 10:00:00', true"
    )
    with pytest.raises(UnknownUserError) as caught:
        load_story(con, "c-1")
    assert str(caught.value) == (
        "contact id 'c-1' belongs to 2 users (u1, u2): give the user id to choose one"
    )
    # Each user's own id still finds that user alone.
    assert load_story(con, "u2").profile["user_id"] == "u2"
    assert load_story(con, "ext-1").profile["user_id"] == "u1"


def test_a_user_id_wins_over_another_user_s_external_id(con) -> None:
    con.execute(
        "insert into marts.dim_users select 'ext-1', 'c-9', 'ext-9', null, 'user',"
        " timestamp '2024-01-03 10:00:00', true"
    )
    assert load_story(con, "ext-1").profile["user_id"] == "ext-1"


def test_ids_emails_and_event_names_that_look_like_markup_are_printed_as_given(con) -> None:
    # Intercom and the app hand over any text; rich would read "[/x]" as a closing tag and
    # fail, and "[bold]" as a style.
    con.execute(
        "update marts.dim_users set external_id = '[bold]ext', email = 'a[/]@b.test',"
        " contact_id = 'c[/x]1'"
    )
    con.execute("update marts.fct_user_journeys set event_name = '[/signup]' where step_number = 1")
    con.execute("update ml.next_best_actions set action_label = '[red]Billing[/red]'")
    out = io.StringIO()

    render_story(load_story(con, "u1"), Console(file=out, width=300))

    text = out.getvalue()
    for given in ("[bold]ext", "a[/]@b.test", "c[/x]1", "[/signup] → invite", "[red]Billing[/red]"):
        assert given in text


def test_an_unknown_id_that_looks_like_markup_is_named_as_given(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch, con
) -> None:
    warehouse = nextbest_home / "warehouse.duckdb"
    nextbest_home.mkdir(parents=True)
    con.execute(f"attach '{warehouse}' as w")
    con.execute("create schema w.marts")
    con.execute("create table w.marts.dim_users as select * from marts.dim_users")
    con.execute("detach w")

    result = CliRunner().invoke(app, ["user", "[/x]"], env={"COLUMNS": "300"})

    assert result.exit_code == 1, result.output
    assert "no user has the id, external id or contact id '[/x]'" in result.output
