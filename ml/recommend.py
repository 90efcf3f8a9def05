"""Next best actions: supported by similar converters, ranked by the model's lift.

For a user at their latest snapshot, the candidates are catalogue actions they have not done.
A candidate needs support: among converters seen at a similar point of their journey (same
actions done, or failing enough of those, the same last action and number of actions done,
and so on), a share of at least `min_support` did it as their next new action. Supported
candidates are ranked by lift: the calibrated probability of converting if the user did the
action now, minus the probability as they are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ml.catalogue import Catalogue
from ml.features import OTHER, action_column, with_action_done

log = logging.getLogger(__name__)

# Similarity keys, most specific first; a state uses the first with enough similar points.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("done_set", "last_key"),
    ("done_set",),
    ("last_key", "n_done"),
    ("last_key",),
    ("n_done",),
    (),
)
LEVEL_NAMES = {
    ("done_set", "last_key"): "same actions done and same last action",
    ("done_set",): "same actions done",
    ("last_key", "n_done"): "same last action and as many actions done",
    ("last_key",): "same last action",
    ("n_done",): "as many actions done",
    (): "all converters",
}
CANDIDATE_COLUMNS = [
    "row",
    "action",
    "support",
    "n_similar",
    "level",
    "score",
    "score_with",
    "lift",
    "raw_lift",
]
STATUSES = (
    "recommended",
    "converted",
    "window_closed",
    "no_supported_candidate",
    "all_actions_done",
)


def similarity_keys(states: pd.DataFrame, actions: list[str]) -> pd.DataFrame:
    """The columns that define "a similar point": done set, last action, number done."""
    done = np.column_stack(
        [
            pd.to_numeric(states[action_column(a)], errors="coerce").fillna(0).to_numpy() > 0
            if action_column(a) in states.columns
            else np.zeros(len(states), dtype=bool)
            for a in actions
        ]
    )
    if len(actions) <= 62:
        # One bit per catalogue action: an exact key that groups fast.
        done_set = pd.Series(done.astype(np.int64) @ (np.int64(1) << np.arange(len(actions))))
    else:  # pragma: no cover - catalogues this large are rare; text keys are exact but slower
        done_set = pd.Series(["".join("1" if f else "0" for f in row) for row in done])
    done_set.index = states.index
    last = states["last_action"].astype("object")
    last_key = last.where(last.isin(actions), OTHER).fillna(OTHER)
    return pd.DataFrame(
        {"done_set": done_set, "last_key": last_key, "n_done": done.sum(axis=1)},
        index=states.index,
    ).join(pd.DataFrame(done, columns=[f"done__{a}" for a in actions], index=states.index))


@dataclass
class Support:
    """What converters did next from each kind of point.

    Attributes:
        actions: The catalogue events.
        tables: Per level, indexed by the level's key: `n` (converters seen there), and per
            action `next__a` (converters whose next new action was a) and `open__a`
            (converters with a not done); a converter with several points at a key counts
            once, split over them.
        min_similar: Fewest converters a level needs before its shares are used.
    """

    actions: list[str]
    tables: dict[tuple[str, ...], pd.DataFrame]
    min_similar: int

    def lookup(self, states: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        """Support shares for each state and action.

        Returns:
            Shares (rows aligned to `states`, one column per action), the number of similar
            points each share rests on, and the level used (its description).
        """
        keys = similarity_keys(states, self.actions)
        shares = pd.DataFrame(np.nan, index=states.index, columns=self.actions)
        n_similar = pd.Series(0, index=states.index, dtype="int64")
        level_used = pd.Series("", index=states.index, dtype="object")
        todo = pd.Series(True, index=states.index)
        for level, table in self.tables.items():
            if not todo.any():
                break
            rows = keys.loc[todo]
            if level:
                found = (
                    rows[list(level)]
                    .merge(table.reset_index(), how="left", on=list(level))
                    .set_axis(rows.index)
                )
            else:
                found = pd.DataFrame(
                    np.repeat(table.to_numpy(), len(rows), axis=0),
                    columns=table.columns,
                    index=rows.index,
                )
            enough = found["n"].fillna(0) >= self.min_similar
            if not level:
                enough[:] = found["n"].fillna(0) > 0
            chosen = found.loc[enough]
            for a in self.actions:
                opened = chosen[f"open__{a}"].astype(float)
                shares.loc[chosen.index, a] = np.where(
                    opened > 0, chosen[f"next__{a}"].astype(float) / opened.where(opened > 0), 0.0
                )
            n_similar.loc[chosen.index] = chosen["n"].astype("int64")
            level_used.loc[chosen.index] = LEVEL_NAMES[level]
            todo.loc[chosen.index] = False
        return shares.fillna(0.0), n_similar, level_used


def build_support(
    states: pd.DataFrame, next_action: pd.Series, actions: list[str], min_similar: int
) -> Support:
    """Count, per similarity level, what converters did next from each point.

    Args:
        states: States of converters before they converted (e.g. from `event_states`).
        next_action: Their next new catalogue action (NA: converted with nothing new).
        actions: The catalogue events.
        min_similar: Fewest converters per key before a level's shares are trusted.
    """
    keys = similarity_keys(states, actions)
    frame = keys.copy()
    frame["n"] = 1.0
    for a in actions:
        frame[f"next__{a}"] = (next_action == a).astype("float64").to_numpy()
        frame[f"open__{a}"] = (~keys[f"done__{a}"]).astype("float64")
    sums = ["n", *(f"next__{a}" for a in actions), *(f"open__{a}" for a in actions)]
    # A converter leaves a point after every event, and most events repeat an action already
    # done: one lingering converter can fill a key alone. Each converter seen at a key weighs
    # one, split evenly over its points there, so `n` counts converters and a share is the
    # share of similar converters, not of their events.
    user = (
        states["user_id"].to_numpy()
        if "user_id" in states.columns
        else np.arange(len(states))  # one converter per point
    )
    frame["_user"] = pd.factorize(user)[0]
    tables = {}
    for level in LEVELS:
        points = frame.groupby(["_user", *level], observed=True)["n"].transform("size")
        weighted = frame[sums].div(points.to_numpy(), axis=0)
        if level:
            weighted[list(level)] = frame[list(level)]
            tables[level] = weighted.groupby(list(level), observed=True)[sums].sum()
        else:
            tables[level] = weighted[sums].sum().to_frame().T
        # each converter's weights at a key add up to one: `n` is a whole count
        tables[level]["n"] = tables[level]["n"].round()
    log.info(
        "support from %d points of %d converters, %d distinct sets of done actions",
        len(frame),
        frame["_user"].nunique(),
        keys["done_set"].nunique(),
    )
    return Support(actions=actions, tables=tables, min_similar=min_similar)


class Scorer(Protocol):
    """What the recommender needs of a model: calibrated and raw conversion scores."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of converting."""

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's uncalibrated, strictly ordered scores."""


def rank_candidates(
    states: pd.DataFrame,
    model: Scorer,
    catalogue: Catalogue,
    support: Support,
    min_support: float,
    support_focus: float = 0.0,
) -> pd.DataFrame:
    """Every supported, not yet done action of every state, with its lift.

    Args:
        states: Mart rows (one per user) to recommend for.
        model: Gives calibrated probabilities (reported) and raw scores (ranked).
        catalogue: The actions.
        support: From `build_support`.
        min_support: Lowest share of similar converters who did an action next.
        support_focus: How much the bar rises where similar converters agree on the next
            step. With best share `b` among the state's actions not yet done, a candidate
            also needs a share of `support_focus * b * b` (at most `b`): where 70% of them
            did one thing next, only steps nearly as common compete on lift; where they
            spread out (`b` of 10%), the bar stays near `min_support`. 0 turns it off.

    Returns:
        One row per (state, candidate): `row` (position in `states`), `action`, `support`,
        `n_similar`, `level`, `score` (as is), `score_with`, `lift`, `raw_lift`, ordered
        best first within each state.
    """
    actions = catalogue.events
    shares, n_similar, level = support.lookup(states)
    base = np.asarray(model.predict(states), dtype=float)
    base_raw = np.asarray(model.raw_scores(states), dtype=float)
    keys = similarity_keys(states, actions)
    undone = pd.DataFrame({a: ~keys[f"done__{a}"] for a in actions}, index=states.index)
    best_share = shares.where(undone, 0.0).max(axis=1)
    floor = np.maximum(min_support, np.minimum(best_share, support_focus * best_share**2))
    parts = []
    for a in actions:
        eligible = undone[a] & (shares[a] >= floor) & (shares[a] > 0)
        if not eligible.any():
            continue
        chosen = states.loc[eligible]
        changed = with_action_done(chosen, a)
        with_a = np.asarray(model.predict(changed), dtype=float)
        raw_with_a = np.asarray(model.raw_scores(changed), dtype=float)
        rows = np.flatnonzero(eligible.to_numpy())
        parts.append(
            pd.DataFrame(
                {
                    "row": rows,
                    "action": a,
                    "support": shares.loc[eligible, a].to_numpy(),
                    "n_similar": n_similar.loc[eligible].to_numpy(),
                    "level": level.loc[eligible].to_numpy(),
                    "score": base[rows],
                    "score_with": with_a,
                    "lift": with_a - base[rows],
                    "raw_lift": raw_with_a - base_raw[rows],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    candidates = pd.concat(parts, ignore_index=True)
    # Ranked by the raw scores' lift: calibration is strictly monotone, so the order is the
    # same, and a calibrator pickled before it was (a flat isotonic step) cannot tie
    # candidates the trees tell apart. The calibrated lift is what is reported.
    return candidates.sort_values(
        ["row", "raw_lift", "support", "action"],
        ascending=[True, False, False, True],
        kind="stable",
    ).reset_index(drop=True)


def reason_text(best: dict, window_days: int) -> str:
    """One line with the numbers behind a recommendation.

    When even the best supported candidate is estimated not to raise the chance of paying (a
    user whose last step is already where converters pay, say), the line says so rather than
    reading like a promise: the action is still the most common next step of converters, and
    the growth team can choose not to message those users.
    """
    support = (
        f"{best['support']:.0%} of {int(best['n_similar']):,} similar users who converted did "
        f"this next ({best['level']})"
    )
    move = f"from {best['score']:.1%} to {best['score_with']:.1%}"
    if best["score_with"] > best["score"]:
        return (
            f"{support}; doing it is estimated to move the chance of paying within "
            f"{window_days} days {move}"
        )
    # An action the trees never split on leaves the score exactly as it is: not "lowers".
    effect = "leaves it as it is" if best["score_with"] == best["score"] else "lowers it least"
    return (
        f"{support}; no supported action is estimated to raise the chance of paying within "
        f"{window_days} days, and this one {effect} ({move})"
    )


def recommend(
    states: pd.DataFrame,
    model: Scorer,
    catalogue: Catalogue,
    support: Support,
    min_support: float,
    window_days: int,
    support_focus: float = 0.0,
) -> pd.DataFrame:
    """The next best action of each state, or the reason there is none.

    Returns:
        One row per state (same order): `user_id`, `status` (`recommended`,
        `no_supported_candidate` or `all_actions_done`), `action`, `action_label`, `lift`,
        `conversion_score`, `alternatives` (JSON list of up to two `{action, label, lift}`),
        `reason`.
    """
    states = states.reset_index(drop=True)
    candidates = rank_candidates(states, model, catalogue, support, min_support, support_focus)
    scores = np.asarray(model.predict(states), dtype=float) if len(states) else np.zeros(0)
    keys = similarity_keys(states, catalogue.events)
    out = pd.DataFrame(
        {
            "user_id": states["user_id"].to_numpy(),
            "status": np.where(
                keys["n_done"].to_numpy() >= len(catalogue.events),
                "all_actions_done",
                "no_supported_candidate",
            ),
            "action": None,
            "action_label": None,
            "lift": np.nan,
            "conversion_score": scores,
            "alternatives": "[]",
            "reason": None,
        }
    ).astype({"action": "object", "action_label": "object", "reason": "object"})
    out.loc[out["status"] == "all_actions_done", "reason"] = (
        "every action of the catalogue is already done"
    )
    out.loc[out["status"] == "no_supported_candidate", "reason"] = (
        f"no action left undone was done next by at least {min_support:.0%} of similar "
        "users who converted"
    )
    if candidates.empty:
        return out
    rank = candidates.groupby("row", sort=False).cumcount()
    labels = {a.event: a.label for a in catalogue.actions}
    best = candidates.loc[rank == 0].set_index("row")
    alts = candidates.loc[(rank > 0) & (rank <= 2)]
    alternatives: dict[int, list[dict[str, object]]] = {}
    for row, action, lift in zip(alts["row"], alts["action"], alts["lift"], strict=True):
        alternatives.setdefault(int(row), []).append(
            {"action": action, "label": labels[action], "lift": round(float(lift), 6)}
        )
    rows = best.index.to_numpy()
    out.loc[rows, "status"] = "recommended"
    out.loc[rows, "action"] = best["action"].to_numpy()
    out.loc[rows, "action_label"] = best["action"].map(labels).to_numpy()
    out.loc[rows, "lift"] = best["lift"].to_numpy()
    out.loc[rows, "alternatives"] = [json.dumps(alternatives.get(int(r), [])) for r in rows]
    out.loc[rows, "reason"] = [
        reason_text(record, window_days) for record in best.to_dict("records")
    ]
    return out


def top_k(candidates: pd.DataFrame, n_rows: int, k: int) -> list[list[str]]:
    """The first k candidate actions of each row (empty lists for rows without any)."""
    ranked: list[list[str]] = [[] for _ in range(n_rows)]
    for row, group in candidates.groupby("row", sort=False):
        ranked[int(row)] = group["action"].head(k).tolist()
    return ranked
