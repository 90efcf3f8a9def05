"""Checks on the model stage's outputs, as plain functions the asset checks call."""

from __future__ import annotations

import json

import pandas as pd

from ml.features import action_column

OPEN_STATUSES = ("recommended", "no_supported_candidate", "all_actions_done")


def completed_actions_recommended(nba: pd.DataFrame, states: pd.DataFrame) -> pd.DataFrame:
    """Recommendations (first choice or alternative) of an action the user already did.

    Args:
        nba: `ml.next_best_actions` rows of one goal.
        states: The users' latest snapshots (count columns per action).

    Returns:
        The offending (user_id, action) pairs; empty when all is well.
    """
    pairs = []
    for row in nba.loc[nba["status"] == "recommended"].itertuples():
        pairs.append((row.user_id, row.action))
        pairs.extend((row.user_id, alt["action"]) for alt in json.loads(row.alternatives or "[]"))
    if not pairs:
        return pd.DataFrame(columns=["user_id", "action"])
    proposed = pd.DataFrame(pairs, columns=["user_id", "action"])
    counts = states.set_index("user_id")
    done = []
    for user, action in proposed.itertuples(index=False):
        column = action_column(action)
        value = counts.at[user, column] if user in counts.index and column in counts else 0
        done.append(pd.notna(value) and value > 0)
    return proposed.loc[done].reset_index(drop=True)


def open_users_without_outcome(
    nba: pd.DataFrame, labels: pd.DataFrame, as_of: pd.Timestamp, window_days: int
) -> list[str]:
    """Users whose window is open and who have not converted, with neither an action nor a reason.

    Computed from the labels, not from the statuses the recommender wrote, so a user it
    forgot or mislabelled shows up.
    """
    window_end = labels["signed_up_at"] + pd.Timedelta(days=window_days)
    paid = labels["first_payment_at"].notna() & (labels["first_payment_at"] <= as_of)
    open_users = set(labels.loc[(window_end > as_of) & ~paid, "user_id"])
    covered = nba.loc[
        nba["status"].isin(OPEN_STATUSES)
        & (nba["action"].notna() | nba["reason"].fillna("").str.len().gt(0))
    ]
    return sorted(open_users - set(covered["user_id"]))
