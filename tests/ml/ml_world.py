"""A small hand-made product with a planted rule, shaped like the dbt marts.

Users act in sessions; after each event their chance to pay depends only on which actions they
have done (`HAZARD_WEIGHTS`), so the action that raises it most is known for every user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.states import event_states

ACTIONS = ["open_app", "create_project", "invite_teammate", "connect_data", "view_report"]
CONVERSION = "payment_done"
# log-odds added to the per-event chance of paying once the action has been done
HAZARD_WEIGHTS = {
    "open_app": 0.0,
    "create_project": 0.6,
    "invite_teammate": 1.6,
    "connect_data": 1.1,
    "view_report": 0.3,
}
BASE_LOGIT = -5.0
START = pd.Timestamp("2024-01-01")


@dataclass
class World:
    """Frames shaped like the marts."""

    journeys: pd.DataFrame
    labels: pd.DataFrame
    features: pd.DataFrame
    users: pd.DataFrame


def hazard(done: set[str]) -> float:
    """Chance to pay right after an event, given the actions done so far."""
    logit = BASE_LOGIT + sum(HAZARD_WEIGHTS[a] for a in done)
    return 1 / (1 + np.exp(-logit))


def make_world(users: int = 1500, seed: int = 7, days: int = 120) -> World:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        user = f"u{u:05d}"
        t = START + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))
        signup = t
        done: set[str] = set()
        step = 0
        paid = None
        for session in range(1, int(rng.integers(1, 5)) + 1):
            if session > 1:
                t += pd.Timedelta(hours=float(rng.uniform(2, 40)))
            for _ in range(int(rng.integers(1, 6))):
                weights = np.array([3.0 if a not in done else 1.0 for a in ACTIONS])
                action = ACTIONS[int(rng.choice(len(ACTIONS), p=weights / weights.sum()))]
                step += 1
                t += pd.Timedelta(seconds=int(rng.integers(20, 300)))
                rows.append((user, action, t, session, step, signup))
                done.add(action)
                if rng.random() < hazard(done):
                    step += 1
                    t += pd.Timedelta(seconds=30)
                    paid = t
                    rows.append((user, CONVERSION, t, session, step, signup))
                    break
            if paid is not None:
                break
    j = pd.DataFrame(
        rows,
        columns=["user_id", "event_name", "occurred_at", "session_number", "step_number", "su"],
    )
    j["seconds_since_signup"] = (j["occurred_at"] - j["su"]).dt.total_seconds().astype("int64")
    j["days_since_signup"] = j["seconds_since_signup"] // 86400
    j["event_id"] = [f"e{i}" for i in range(len(j))]
    j["session_id"] = j["user_id"] + "-" + j["session_number"].astype(str)
    journeys = j.drop(columns="su")
    firsts = j.groupby("user_id").agg(signed_up_at=("su", "first"))
    pay = j.loc[j["event_name"] == CONVERSION].groupby("user_id")["occurred_at"].min()
    labels = firsts.reset_index()
    labels["first_payment_at"] = labels["user_id"].map(pay)
    labels["history_complete"] = True
    states = event_states(journeys, [*ACTIONS, CONVERSION])
    last_in_session = ~journeys.sort_values(["user_id", "step_number"]).duplicated(
        ["user_id", "session_number"], keep="last"
    )
    features = states.loc[last_in_session.to_numpy()].reset_index(drop=True)
    features["snapshot_kind"] = "session_end"
    features["snapshot_id"] = features["user_id"] + "-" + features["step_number"].astype(str)
    features["history_complete"] = True
    users_frame = labels[["user_id"]].copy()
    users_frame["contact_id"] = "c-" + users_frame["user_id"]
    users_frame["external_id"] = users_frame["user_id"]
    users_frame["country"] = np.where(np.arange(len(users_frame)) % 3 == 0, "DE", "US")
    return World(journeys, labels, features, users_frame)
