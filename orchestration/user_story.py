"""`nextbest user ID`: one user's story, read from the warehouse, for a growth team."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class UnknownUserError(LookupError):
    """No user matches the given id."""


@dataclass(frozen=True)
class UserStory:
    """What the warehouse knows of one user."""

    profile: dict
    sessions: list[dict]
    journey: list[dict]
    completed_actions: list[str]
    label: dict | None
    recommendation: dict | None


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def _no_marts(con: duckdb.DuckDBPyConnection) -> str:
    """What is missing from the warehouse and the commands that build it."""
    found = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    where = found[0] if found and found[0] else "the in-memory warehouse"
    raw = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'raw'"
    ).fetchone()
    message = (
        f"no table marts.dim_users in {where}: dbt has not built the marts there yet; "
        "`make demo` (or the job `full_refresh` in `make ui`) loads the raw layer and builds them"
    )
    if raw and raw[0]:
        # The raw layer is there, so dbt alone builds the marts from it, without a new sync.
        tables = f"{raw[0]} table" if raw[0] == 1 else f"{raw[0]} tables"
        message += (
            f"; its raw layer is loaded ({tables}), so "
            "`.venv/bin/dbt build --project-dir . --profiles-dir .` alone builds them"
        )
    return message


# Searched in this order: an app user id names one user; an external or contact id may be
# shared (dirt, a lead merged into a user) and then names nobody in particular.
_ID_COLUMNS = (("user_id", "user id"), ("external_id", "external id"), ("contact_id", "contact id"))


def _find_user(con: duckdb.DuckDBPyConnection, ident: str) -> dict[str, Any]:
    for column, what in _ID_COLUMNS:
        found = _rows(
            con, f"select * from marts.dim_users where {column} = ? order by user_id", [ident]
        )
        if len(found) == 1:
            return found[0]
        if found:
            users = ", ".join(str(row["user_id"]) for row in found)
            raise UnknownUserError(
                f"{what} {ident!r} belongs to {len(found)} users ({users}): "
                "give the user id to choose one"
            )
    raise UnknownUserError(f"no user has the id, external id or contact id {ident!r}")


def load_story(
    con: duckdb.DuckDBPyConnection,
    ident: str,
    goal: str | None = None,
    primary: str | None = None,
) -> UserStory:
    """Find a user by app user id, external id or Intercom contact id and read their story.

    The recommendation shown is the one for `goal`; without it, the one for `primary` (the
    goals file's primary goal) when that goal has recommendations.

    Raises:
        UnknownUserError: No user has that id.
        RuntimeError: The warehouse has not been built yet.
    """
    if not _table_exists(con, "marts", "dim_users"):
        raise RuntimeError(_no_marts(con))
    profile = _find_user(con, ident)
    user_id = profile["user_id"]
    sessions = _rows(
        con,
        "select * from marts.fct_sessions where user_id = ? order by session_number",
        [user_id],
    )
    journey = _rows(
        con,
        "select * from marts.fct_user_journeys where user_id = ? order by step_number",
        [user_id],
    )
    labels = _rows(con, "select * from marts.fct_conversion_labels where user_id = ?", [user_id])
    recommendation = None
    completed: list[str] = []
    if _table_exists(con, "ml", "next_best_actions"):
        goals = [
            g for (g,) in con.execute("select distinct goal from ml.next_best_actions").fetchall()
        ]
        if goal and goal not in goals:
            raise UnknownUserError(f"unknown goal {goal!r}; goals with recommendations: {goals}")
        if not goal and primary in goals:
            goal = primary
        where = "user_id = ?" + (" and goal = ?" if goal else "")
        params = [user_id, goal] if goal else [user_id]
        # Ordered, so that without a goal and a known primary the same one shows every time.
        recs = _rows(
            con, f"select * from ml.next_best_actions where {where} order by goal limit 1", params
        )
        recommendation = recs[0] if recs else None
    if _table_exists(con, "ml", "action_catalogue"):
        catalogue = {r["action"] for r in _rows(con, "select action from ml.action_catalogue", [])}
        completed = sorted({e["event_name"] for e in journey} & catalogue)
    else:
        completed = sorted({e["event_name"] for e in journey})
    return UserStory(
        profile=profile,
        sessions=sessions,
        journey=journey,
        completed_actions=completed,
        label=labels[0] if labels else None,
        recommendation=recommendation,
    )


def render_story(story: UserStory, console: Console) -> None:
    """Print the story: profile, sessions and actions, score and recommendations."""
    # Ids, emails, event names and labels come from outside: printed as given, never read as
    # rich markup (`[/x]` would be a closing tag, `[bold]` a style).
    p = {
        key: escape(str(value)) if value is not None else None
        for key, value in story.profile.items()
    }
    console.print(
        f"[bold]user {p['user_id']}[/bold]  contact {p.get('contact_id')}  "
        f"external id {p.get('external_id') or '-'}  email {p.get('email') or '-'}"
    )
    console.print(
        f"signed up {p.get('signed_up_at')}  role {p.get('role')}  "
        f"journey fully known: {p.get('history_complete')}"
    )
    label = story.label or {}
    if label.get("first_payment_at"):
        console.print(
            f"[green]converted[/green]: first payment {label['first_payment_at']}"
            f" ({label.get('days_to_convert')} days after sign-up)"
        )
    sessions = Table(title=f"{len(story.sessions)} sessions, {len(story.journey)} events")
    for column in ("session", "started", "events", "actions"):
        sessions.add_column(column)
    by_session: dict[object, list[str]] = {}
    for event in story.journey:
        by_session.setdefault(event["session_id"], []).append(escape(str(event["event_name"])))
    for s in story.sessions:
        steps = by_session.get(s["session_id"], [])
        shown = " → ".join(steps[:12]) + (" …" if len(steps) > 12 else "")
        sessions.add_row(str(s["session_number"]), str(s["started_at"]), str(s["n_events"]), shown)
    console.print(sessions)
    done = ", ".join(escape(str(action)) for action in story.completed_actions)
    console.print(f"completed actions: {done or 'none'}")
    rec = story.recommendation
    if rec is None:
        console.print("no recommendation has been computed for this user yet")
        return
    if rec.get("conversion_score") is not None:
        console.print(f"conversion score: {rec['conversion_score']:.3f}")
    if rec["status"] != "recommended":
        console.print(
            f"no recommendation: {escape(str(rec['status']))} ({escape(rec.get('reason') or '')})"
        )
        return
    table = Table(title="next best actions")
    for column in ("rank", "action", "label", "lift"):
        table.add_column(column)
    table.add_row(
        "1", escape(str(rec["action"])), escape(str(rec["action_label"])), f"{rec['lift']:+.3f}"
    )
    alternatives = rec.get("alternatives") or "[]"
    for rank, alt in enumerate(
        json.loads(alternatives) if isinstance(alternatives, str) else alternatives, start=2
    ):
        table.add_row(
            str(rank),
            escape(str(alt.get("action", ""))),
            escape(str(alt.get("label", ""))),
            f"{alt.get('lift', 0):+.3f}",
        )
    console.print(table)
    console.print(f"why: {escape(str(rec.get('reason')))}")
