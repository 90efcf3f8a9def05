"""From the rows of `fct_user_features` to the model's numeric matrix, and back again.

The same encoding serves training, scoring and the recommender's "what if they did X" rows, so
it lives in one place and travels inside the logged model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

ACTION_PREFIX = "n_action__"
BASE_NUMERIC = (
    "seconds_since_signup",
    "days_since_signup",
    "n_events",
    "n_sessions",
    "n_active_days",
    "seconds_since_last_event",
    "step_number",
)
OTHER = "__other__"
NONE = "__none__"


def action_column(event: str) -> str:
    """The feature column counting an event, as the dbt mart names it."""
    return ACTION_PREFIX + re.sub(r"[^a-z0-9]+", "_", event.lower()).strip("_")


@dataclass(frozen=True)
class FeatureSpec:
    """Which mart columns feed the model and how categorical ones are spread out.

    Attributes:
        numeric: Numeric mart columns used as they are.
        action_events: Catalogue events; `last_action` and `previous_action` become one-hot
            columns over these (anything else is "other").
    """

    numeric: tuple[str, ...]
    action_events: tuple[str, ...]

    @property
    def action_columns(self) -> list[str]:
        """Count columns of the catalogue actions."""
        return [action_column(event) for event in self.action_events]

    @property
    def names(self) -> list[str]:
        """Names of the encoded features, in matrix order."""
        levels = [*self.action_events, OTHER, NONE]
        return [
            *self.numeric,
            *(f"done:{event}" for event in self.action_events),
            "n_catalogue_actions_done",
            *(f"last_action={level}" for level in levels),
            *(f"previous_action={level}" for level in levels),
        ]

    @property
    def input_columns(self) -> list[str]:
        """Mart columns the encoding reads."""
        return [*self.numeric, "last_action", "previous_action"]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode mart rows as a float32 matrix with the columns of `names`.

        Missing numeric columns count as zero: a catalogue action nobody in this frame has
        done has no count column in a narrower mart.
        """
        n = len(frame)
        numeric = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, column in enumerate(self.numeric):
            if column in frame.columns:
                values = pd.to_numeric(frame[column], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=0.0
                )
                numeric[:, j] = values
        # Whether each action was done at all: the step from 0 to 1 is what a nudge changes,
        # and a flag lets the trees see it without learning the count threshold.
        flags = np.zeros((n, len(self.action_events)), dtype=np.float32)
        for j, column in enumerate(self.action_columns):
            if column in frame.columns:
                counts = pd.to_numeric(frame[column], errors="coerce")
                flags[:, j] = counts.to_numpy(dtype=np.float64, na_value=0.0) > 0
        parts = [numeric, flags, flags.sum(axis=1, keepdims=True)]
        levels = [*self.action_events, OTHER, NONE]
        for column in ("last_action", "previous_action"):
            values = (
                frame[column].astype("object").where(frame[column].notna(), NONE)
                if column in frame.columns
                else pd.Series(NONE, index=frame.index, dtype="object")
            )
            known = set(self.action_events) | {NONE}
            values = values.where(values.isin(known), OTHER)
            codes = pd.Categorical(values, categories=levels).codes
            onehot = np.zeros((n, len(levels)), dtype=np.float32)
            onehot[np.arange(n), codes] = 1.0
            parts.append(onehot)
        return np.hstack(parts)


def spec_for(features: pd.DataFrame, action_events: list[str], excluded: list[str]) -> FeatureSpec:
    """The feature spec for a features mart: base columns and every action count column.

    Args:
        features: Rows of `fct_user_features` (only the columns are read).
        action_events: The catalogue's events.
        excluded: Events whose counts must not be features (the conversion event).
    """
    dropped = {action_column(event) for event in excluded}
    counts = sorted(c for c in features.columns if c.startswith(ACTION_PREFIX) and c not in dropped)
    for event in action_events:
        if action_column(event) not in counts:
            counts.append(action_column(event))
    base = [c for c in BASE_NUMERIC if c in features.columns]
    return FeatureSpec(numeric=tuple(base + counts), action_events=tuple(action_events))


def with_action_done(states: pd.DataFrame, event: str) -> pd.DataFrame:
    """The same states as if each user had just done `event`.

    The action's count rises by one, it becomes the last action (the old last one becomes the
    previous), the journey gains one step and one event, and no time has passed.
    """
    column = action_column(event)
    changed = states.copy()
    current = changed[column] if column in changed.columns else 0
    changed[column] = pd.to_numeric(current, errors="coerce").fillna(0) + 1
    changed["previous_action"] = states["last_action"]
    changed["last_action"] = event
    for counter in ("n_events", "step_number"):
        if counter in changed.columns:
            changed[counter] = changed[counter] + 1
    if "seconds_since_last_event" in changed.columns:
        changed["seconds_since_last_event"] = 0
    return changed
