"""Conversion goals: who a model is about and how long they have to convert.

A goal is declared in YAML (see `ml/config/goals.yaml`). With no file, the one goal is
everyone within seven days. Each goal gets its own labels, model and recommendations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_GOAL_NAME = "everyone-7d"


class GoalError(ValueError):
    """A goal file or a goal's segment that cannot be used, with the goal and the reason."""


@dataclass(frozen=True)
class Goal:
    """One conversion goal.

    Attributes:
        name: Identifier, used in the model name `nextbest-<name>` and the tables.
        window_days: A first payment within this many days of sign-up counts as converting.
        segment: Filter on `marts.dim_users` columns: column -> allowed values.
        primary: Whether this goal feeds the Intercom attribute.
        description: One line for people.
    """

    name: str
    window_days: int = 7
    segment: dict[str, tuple[object, ...]] = field(default_factory=dict)
    primary: bool = False
    description: str = ""

    @property
    def model_name(self) -> str:
        """Registered model name in MLflow."""
        return f"nextbest-{self.name}"

    @property
    def experiment_name(self) -> str:
        """MLflow experiment of this goal."""
        return f"nextbest-{self.name}"


def default_goals() -> list[Goal]:
    """The goal used when no file declares any: everyone, seven days."""
    return [Goal(name=DEFAULT_GOAL_NAME, window_days=7, primary=True, description="Everyone")]


def parse_goals(document: object, source: str = "goals") -> list[Goal]:
    """Turn a parsed YAML document into validated goals.

    Args:
        document: The parsed YAML, a mapping with a `goals` list.
        source: Where the document came from, for error messages.

    Returns:
        The goals, exactly one of them primary.

    Raises:
        GoalError: A goal without a valid name, a bad window, duplicate names, or not exactly
            one primary goal.
    """
    if document is None:
        return default_goals()
    if not isinstance(document, dict) or not isinstance(document.get("goals"), list):
        raise GoalError(f"{source}: expected a mapping with a 'goals' list")
    goals: list[Goal] = []
    for index, raw in enumerate(document["goals"]):
        where = f"{source}: goal #{index + 1}"
        if not isinstance(raw, dict):
            raise GoalError(f"{where}: expected a mapping, got {type(raw).__name__}")
        name = str(raw.get("name", ""))
        if not NAME_RULE.match(name):
            raise GoalError(f"{where}: name {name!r} must match {NAME_RULE.pattern}")
        window = raw.get("window_days", 7)
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 365:
            raise GoalError(f"{source}: goal {name!r}: window_days {window!r} is not 1..365")
        segment_raw = raw.get("segment") or {}
        if not isinstance(segment_raw, dict):
            raise GoalError(f"{source}: goal {name!r}: segment must be a mapping column -> values")
        segment = {
            str(column): tuple(values) if isinstance(values, list) else (values,)
            for column, values in segment_raw.items()
        }
        goals.append(
            Goal(
                name=name,
                window_days=window,
                segment=segment,
                primary=bool(raw.get("primary", False)),
                description=str(raw.get("description", "")),
            )
        )
    if not goals:
        return default_goals()
    names = [goal.name for goal in goals]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise GoalError(f"{source}: goal names used twice: {duplicates}")
    primaries = [goal.name for goal in goals if goal.primary]
    if len(goals) == 1 and not primaries:
        goals[0] = Goal(**{**goals[0].__dict__, "primary": True})
    elif len(primaries) != 1:
        raise GoalError(f"{source}: exactly one goal must be primary, found {primaries or 'none'}")
    return goals


def load_goals(path: Path | None) -> list[Goal]:
    """Read goals from a YAML file; a missing path or file gives the default goal."""
    if path is None or not Path(path).exists():
        return default_goals()
    return parse_goals(yaml.safe_load(Path(path).read_text()), source=str(path))


def primary_goal(goals: list[Goal]) -> Goal:
    """The goal that feeds the Intercom attribute."""
    return next(goal for goal in goals if goal.primary)


def segment_mask(users: pd.DataFrame, goal: Goal) -> pd.Series:
    """Which rows of `dim_users` belong to the goal's segment.

    Values compare as text, case-blind and trimmed, because contact properties come from
    Intercom as free text ("DE", "de ").

    Raises:
        GoalError: The segment names a column `dim_users` does not have.
    """
    mask = pd.Series(True, index=users.index)
    for column, allowed in goal.segment.items():
        if column not in users.columns:
            raise GoalError(
                f"goal {goal.name!r}: segment column {column!r} is not in dim_users "
                f"(columns: {sorted(users.columns)})"
            )
        wanted = {str(value).strip().casefold() for value in allowed}
        values = users[column].astype("string").str.strip().str.casefold()
        mask &= values.isin(wanted).fillna(False).astype(bool)
    return mask
