"""Journey states at every event, and the next new action each state led to.

`fct_user_features` holds snapshots where recommendations are made (session ends, day
boundaries). The recommender's support ("what did similar converters do next?") and the
offline evaluation ("cut a journey at a random point") need the state after *any* event, so
this module rebuilds the same columns per event from `fct_user_journeys`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import action_column


def event_states(journeys: pd.DataFrame, count_events: list[str]) -> pd.DataFrame:
    """The journey state right after each event, with the columns of `fct_user_features`.

    Args:
        journeys: `fct_user_journeys` rows: `user_id`, `event_name`, `occurred_at`,
            `session_number`, `step_number`, `seconds_since_signup`, `days_since_signup`.
        count_events: Events that get an `n_action__<event>` running count.

    Returns:
        One row per event, in journey order, with `snapshot_at` the event's time.
    """
    j = journeys.sort_values(["user_id", "step_number"], kind="stable").reset_index(drop=True)
    by_user = j.groupby("user_id", sort=False)
    days = j["days_since_signup"].astype("int64")
    first_of_day = ~pd.DataFrame({"u": j["user_id"], "d": days}).duplicated()
    out = pd.DataFrame(
        {
            "user_id": j["user_id"],
            "snapshot_at": j["occurred_at"],
            "seconds_since_signup": j["seconds_since_signup"],
            "days_since_signup": j["days_since_signup"],
            "n_events": j["step_number"],
            "n_sessions": j["session_number"],
            "n_active_days": first_of_day.astype("int64").groupby(j["user_id"]).cumsum(),
            "seconds_since_last_event": 0,
            "step_number": j["step_number"],
            "last_action": j["event_name"].astype("object"),
            "previous_action": by_user["event_name"].shift(1).astype("object"),
        }
    )
    names = j["event_name"].to_numpy()
    counts = {}
    for event in count_events:
        hit = pd.Series((names == event).astype(np.int32), index=j.index)
        counts[action_column(event)] = hit.groupby(j["user_id"], sort=False).cumsum()
    return pd.concat([out, pd.DataFrame(counts)], axis=1)


def first_steps(journeys: pd.DataFrame, actions: list[str]) -> pd.DataFrame:
    """Per user and catalogue action, the step at which the user first did it."""
    columns = ["user_id", "event_name", "step_number"]
    done = journeys.loc[journeys["event_name"].isin(actions), columns]
    return (
        done.groupby(["user_id", "event_name"], as_index=False, observed=True)["step_number"]
        .min()
        .rename(columns={"event_name": "next_action", "step_number": "next_step"})
    )


def next_new_action(
    states: pd.DataFrame, firsts: pd.DataFrame, stop_step: pd.Series | None = None
) -> pd.Series:
    """The first catalogue action each state's user did after it that was new to them.

    Args:
        states: Rows with `user_id` and `step_number` (steps so far).
        firsts: From `first_steps`.
        stop_step: Per user id, the step of conversion: actions from it on do not count.

    Returns:
        The action (or NA when the user did nothing new afterwards), aligned to `states`.
    """
    left = states[["user_id", "step_number"]].copy()
    left["_row"] = np.arange(len(left))
    left["step_number"] = left["step_number"].astype("int64")
    right = firsts.astype({"next_step": "int64"}).sort_values("next_step", kind="stable")
    # Break ties of two actions first done at the same step by name, deterministically.
    right = right.sort_values(["next_step", "next_action"], kind="stable")
    merged = pd.merge_asof(
        left.sort_values("step_number", kind="stable"),
        right,
        left_on="step_number",
        right_on="next_step",
        by="user_id",
        direction="forward",
        allow_exact_matches=False,
    ).sort_values("_row")
    action = merged["next_action"].astype("object")
    if stop_step is not None:
        # As floats: mapped onto no row, the column would be empty text that "<" refuses.
        stop = merged["user_id"].map(stop_step).astype("float64")
        action = action.where(stop.isna() | (merged["next_step"] < stop))
    values = [None if pd.isna(a) else a for a in action.to_numpy()]
    return pd.Series(values, index=states.index, name="next_action", dtype="object")
