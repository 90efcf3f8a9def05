"""Conversion goals: who a model is about and how long they have to convert.

A goal is declared in YAML (see `ml/config/goals.yaml`). With no file, the one goal is
everyone within seven days. Each goal gets its own labels, model and recommendations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml.yaml_file import read_yaml

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_GOAL_NAME = "everyone-7d"
GOAL_KEYS = ("name", "window_days", "segment", "primary", "description")
# A segment value is compared as text with a `dim_users` column; a list or a mapping as text
# would match nothing, and a null never matches (missing values are outside every segment).
SEGMENT_VALUE_TYPES = (str, int, float, bool)


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
    unknown = sorted(str(key) for key in document if key != "goals")
    if unknown:
        raise GoalError(f"{source}: unknown top-level keys {unknown}; only 'goals' is read")
    goals: list[Goal] = []
    for index, raw in enumerate(document["goals"]):
        where = f"{source}: goal #{index + 1}"
        if not isinstance(raw, dict):
            raise GoalError(f"{where}: expected a mapping, got {type(raw).__name__}")
        name = str(raw.get("name", ""))
        if not NAME_RULE.match(name):
            raise GoalError(f"{where}: name {name!r} must match {NAME_RULE.pattern}")
        # A misspelt key (`window_day: 30`) would otherwise leave the default in place.
        unknown = sorted(str(key) for key in raw if key not in GOAL_KEYS)
        if unknown:
            raise GoalError(
                f"{source}: goal {name!r}: unknown keys {unknown}; known: {list(GOAL_KEYS)}"
            )
        window = raw.get("window_days", 7)
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 365:
            raise GoalError(f"{source}: goal {name!r}: window_days {window!r} is not 1..365")
        primary = raw.get("primary", False)
        if not isinstance(primary, bool):
            # bool("false") is True: a quoted value would silently make the goal primary.
            raise GoalError(
                f"{source}: goal {name!r}: primary {primary!r} is not true or false (unquoted)"
            )
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            # A list or a mapping would otherwise be stored as its Python text.
            raise GoalError(
                f"{source}: goal {name!r}: description {description!r} is not text (quote it)"
            )
        segment = _segment(raw.get("segment"), f"{source}: goal {name!r}")
        goals.append(
            Goal(
                name=name,
                window_days=window,
                segment=segment,
                primary=primary,
                description=description or "",
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


def _segment(raw: object, where: str) -> dict[str, tuple[object, ...]]:
    """A goal's segment as column -> allowed values, each value a scalar."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GoalError(f"{where}: segment must be a mapping column -> values")
    segment: dict[str, tuple[object, ...]] = {}
    for column, values in raw.items():
        allowed = tuple(values) if isinstance(values, list) else (values,)
        if not allowed:
            raise GoalError(f"{where}: segment column {column!r} lists no values")
        for value in allowed:
            if value is None or not isinstance(value, SEGMENT_VALUE_TYPES):
                raise GoalError(
                    f"{where}: segment column {column!r}: value {value!r} is not a text or "
                    "number (a missing value never matches)"
                )
        segment[str(column)] = allowed
    return segment


def load_goals(path: Path | None) -> list[Goal]:
    """Read goals from a YAML file; a missing path or file gives the default goal.

    Raises:
        GoalError: The path is a folder, the file is not UTF-8 or not valid YAML, or a goal
            is invalid (see `parse_goals`).
    """
    if path is None or not Path(path).exists():
        return default_goals()
    return parse_goals(read_yaml(Path(path), GoalError), source=str(path))


def check_marts_window(goals: list[Goal], marts_window_days: int) -> None:
    """Refuse goals whose window is longer than the one the marts were built with.

    dbt takes snapshots only within `conversion_window_days` of sign-up, so a longer goal
    would be trained and scored on snapshots that stop before its window does.

    Raises:
        GoalError: A goal's `window_days` is over `marts_window_days`, naming both.
    """
    longer = [f"{g.name} ({g.window_days})" for g in goals if g.window_days > marts_window_days]
    if longer:
        raise GoalError(
            f"goals with window_days over NEXTBEST_CONVERSION_WINDOW_DAYS ({marts_window_days}),"
            f" the marts' snapshot window: {', '.join(longer)}; raise the setting and rebuild "
            "the marts, or shorten the goal"
        )


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
