"""The write plan: which contacts need which attribute changes, checked before anything is sent.

Planning is pure: recommendations and the state table in, a list of per-contact changes out.
Only `recommended` rows carry an action; every other status (converted, window closed, no
candidate, all actions done) clears what nextbest wrote before, so no contact keeps an action
that no longer applies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from ml.recommend import STATUSES
from orchestration.activation.store import to_json
from orchestration.activation.values import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    InvalidAttributeValue,
    validate_value,
)

RECOMMENDED = "recommended"
MISSING = "missing"
"""Status of a contact that carries an action but has no row in `ml.next_best_actions`."""

# The score is rounded so that retraining noise in the fifth decimal does not rewrite every
# contact; four decimals are more than any message targeting rule can use.
SCORE_DECIMALS = 4

# Attributes whose change means the recommendation changed; `nb_updated_at` only follows them.
CONTENT_ATTRIBUTES = ("nb_next_action", "nb_next_action_label", "nb_conversion_score")


@dataclass(frozen=True)
class Recommendation:
    """One row of `ml.next_best_actions` for the goal that feeds Intercom."""

    user_id: str
    contact_id: str | None
    status: str
    action: Any = None
    action_label: Any = None
    conversion_score: Any = None


@dataclass(frozen=True)
class AttributeChange:
    """One attribute to set: the stored old value, the value to send, and its stored form."""

    attribute: str
    old_value: str | None
    new_value: Any
    new_json: str | None


@dataclass
class ContactWrite:
    """Everything one contact needs; `invalid` names attributes whose values were rejected."""

    contact_id: str
    user_id: str
    status: str
    changes: list[AttributeChange]
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        """The `custom_attributes` of the `PUT /contacts/{id}` request."""
        return {change.attribute: change.new_value for change in self.changes}


@dataclass
class Plan:
    """The write plan and what planning left out, counted."""

    writes: list[ContactWrite]
    unchanged: int = 0
    without_contact: list[str] = field(default_factory=list)
    duplicated_contacts: list[str] = field(default_factory=list)
    gone: int = 0

    @property
    def valid_writes(self) -> list[ContactWrite]:
        """Contacts whose every value passed its type check."""
        return [w for w in self.writes if not w.invalid]

    @property
    def invalid_writes(self) -> list[ContactWrite]:
        """Contacts with at least one value their attribute's type would reject."""
        return [w for w in self.writes if w.invalid]

    def counts(self) -> dict[str, int]:
        """Numbers for logs and metadata."""
        sets = sum(1 for w in self.writes if w.status == RECOMMENDED)
        return {
            "contacts_to_write": len(self.writes),
            "contacts_to_set": sets,
            "contacts_to_clear": len(self.writes) - sets,
            "contacts_invalid": len(self.invalid_writes),
            "contacts_unchanged": self.unchanged,
            "contacts_gone": self.gone,
            "users_without_contact": len(self.without_contact),
            "contacts_duplicated": len(self.duplicated_contacts),
        }


def desired_values(rec: Recommendation) -> dict[str, Any]:
    """The content attributes a recommendation asks for; all None when it asks to clear."""
    if rec.status != RECOMMENDED:
        return dict.fromkeys(CONTENT_ATTRIBUTES)
    return {
        "nb_next_action": rec.action,
        "nb_next_action_label": rec.action_label,
        "nb_conversion_score": rec.conversion_score,
    }


def _check(name: str, value: Any, data_type: Any) -> Any:
    """`validate_value`, and for the score: a probability, rounded to `SCORE_DECIMALS`."""
    value = validate_value(value, data_type)
    if name == "nb_conversion_score" and value is not None:
        if not 0.0 <= value <= 1.0:
            raise InvalidAttributeValue(f"{value!r} is not a probability between 0 and 1")
        value = round(value, SCORE_DECIMALS)
    return value


def row_problem(rec: Recommendation) -> str | None:
    """Why a row cannot be planned at all (unknown status, a recommendation with no action)."""
    if rec.status != MISSING and rec.status not in STATUSES:
        return f"status {rec.status!r} is not one of {', '.join(STATUSES)}"
    if rec.status == RECOMMENDED and (
        rec.action is None or (isinstance(rec.action, str) and not rec.action.strip())
    ):
        return f"a recommended row needs an action, found {rec.action!r}"
    return None


def plan_writes(
    recommendations: list[Recommendation],
    state: dict[str, dict[str, str | None]],
    today: date,
    gone: set[str] | frozenset[str] = frozenset(),
    *,
    clear_missing: bool = False,
) -> Plan:
    """Compare recommendations with the state table and list the changes to send.

    A contact is written when one of its content attributes differs from the last value
    written; `nb_updated_at` is then set to `today` (or cleared with the rest).

    Args:
        recommendations: The goal's rows of `ml.next_best_actions`.
        state: Last written JSON value per contact and attribute (`store.read_state`).
        today: The date `nb_updated_at` takes for changed recommendations.
        gone: Contacts known to be merged, deleted or archived: never written.
        clear_missing: Also clear contacts that carry an action from an earlier run but have
            no row now (the user left the goal); only for runs that cover every contact.
    """
    types = {spec.name: spec.data_type for spec in ATTRIBUTES}
    per_contact = Counter(r.contact_id for r in recommendations if r.contact_id)
    if clear_missing:
        shown = [c for c, values in state.items() if values.get("nb_next_action") is not None]
        recommendations = recommendations + [
            Recommendation("", c, MISSING) for c in sorted(shown) if c not in per_contact
        ]
    plan = Plan(writes=[])
    plan.duplicated_contacts = sorted(c for c, n in per_contact.items() if n > 1)
    for rec in recommendations:
        if not rec.contact_id:
            plan.without_contact.append(rec.user_id)
            continue
        if per_contact[rec.contact_id] > 1:
            continue
        if rec.contact_id in gone:
            plan.gone += 1
            continue
        stored = state.get(rec.contact_id, {})
        wanted = desired_values(rec)
        if wanted["nb_next_action"] is not None:
            wanted["nb_updated_at"] = today
        else:
            wanted["nb_updated_at"] = None
        changes: list[AttributeChange] = []
        invalid: dict[str, str] = {}
        content_changed = False
        for name in ATTRIBUTE_NAMES:
            try:
                value = _check(name, wanted[name], types[name])
            except InvalidAttributeValue as exc:
                invalid[name] = str(exc)
                changes.append(AttributeChange(name, stored.get(name), wanted[name], None))
                content_changed = True
                continue
            new_json = to_json(value)
            old_json = stored.get(name)
            if name in CONTENT_ATTRIBUTES and new_json != old_json:
                content_changed = True
            changes.append(AttributeChange(name, old_json, value, new_json))
        problem = row_problem(rec)
        if problem is not None:
            # Held back whole: the row says neither what to set nor that it should be cleared.
            invalid["nb_next_action"] = problem
            content_changed = True
        if not content_changed:
            plan.unchanged += 1
            continue
        # Send only what differs; the date follows any content change.
        changes = [
            c
            for c in changes
            if c.attribute in invalid
            or c.new_json != c.old_value
            or (c.attribute == "nb_updated_at" and c.new_json is not None)
        ]
        plan.writes.append(ContactWrite(rec.contact_id, rec.user_id, rec.status, changes, invalid))
    return plan


def read_recommendations(
    con: duckdb.DuckDBPyConnection, goal: str, contact_ids: list[str] | None = None
) -> list[Recommendation]:
    """The goal's rows of `ml.next_best_actions`, optionally only for some contacts."""
    sql = """select user_id, contact_id, status, action, action_label, conversion_score
        from ml.next_best_actions where goal = ?"""
    params: list[Any] = [goal]
    if contact_ids is not None:
        sql += " and contact_id in (select unnest(?::varchar[]))"
        params.append(contact_ids)
    sql += " order by contact_id, user_id"
    return [Recommendation(*row) for row in con.execute(sql, params).fetchall()]


def declared_primary_goal() -> str | None:
    """The primary goal of the goals file the models use, or None when it cannot be read."""
    try:
        from ml.goals import load_goals
        from ml.goals import primary_goal as primary_of
        from ml.settings import MLSettings

        return primary_of(load_goals(MLSettings().goals_file)).name
    except (ImportError, ValueError, OSError, StopIteration):
        return None


def primary_goal(con: duckdb.DuckDBPyConnection, configured: str, declared: str | None) -> str:
    """The goal that feeds Intercom: the configured one, else the declared primary one.

    Args:
        con: The warehouse.
        configured: `NEXTBEST_ACTIVATION_GOAL`, empty when unset.
        declared: The goals file's primary goal, None when unknown.

    Raises:
        ValueError: The chosen goal has no rows while others do, no goal can be chosen, or
            rows have no goal at all.
    """
    without = con.execute("select count(*) from ml.next_best_actions where goal is null").fetchone()
    if without[0]:
        raise ValueError(f"ml.next_best_actions holds {without[0]} rows without a goal")
    goals = sorted(
        row[0] for row in con.execute("select distinct goal from ml.next_best_actions").fetchall()
    )
    chosen = configured or declared
    if chosen:
        if goals and chosen not in goals:
            raise ValueError(f"goal {chosen!r} has no rows in ml.next_best_actions: {goals}")
        return chosen
    if len(goals) <= 1:
        return goals[0] if goals else ""
    raise ValueError(
        f"ml.next_best_actions holds goals {goals} and none is declared primary; "
        "set NEXTBEST_ACTIVATION_GOAL"
    )
