"""Offline evaluation of the recommender against two baselines, on held-out converters.

Each held-out converter's journey is cut at every point before they paid; the target is the
next catalogue action they had not done yet and then did. HitRate@k is the share of cuts where
the target is among the first k proposals, each converter weighing the same. Every method
proposes only actions not yet done, so none is penalised for refusing to repeat a completed
action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.catalogue import Catalogue
from ml.recommend import (
    Scorer,
    Support,
    build_support,
    rank_candidates,
    similarity_keys,
    top_k,
)
from ml.states import event_states, first_steps, next_new_action

log = logging.getLogger(__name__)

STEP_CAP = 50


@dataclass
class ConverterPoints:
    """Every point of converters' journeys before they paid, with the next new action."""

    states: pd.DataFrame
    next_action: pd.Series
    transitions: pd.DataFrame


def converter_points(
    journeys: pd.DataFrame,
    labels: pd.DataFrame,
    catalogue: Catalogue,
    count_events: list[str],
    users: set[str] | None = None,
) -> ConverterPoints:
    """States of converters after each event before their first payment.

    Args:
        journeys: `fct_user_journeys` rows.
        labels: `fct_conversion_labels` rows.
        catalogue: The actions.
        count_events: Events that get count columns (those the model reads).
        users: Restrict to these users (e.g. one split).
    """
    paid = labels.loc[labels["first_payment_at"].notna(), ["user_id", "first_payment_at"]]
    if users is not None:
        paid = paid.loc[paid["user_id"].isin(users)]
    j = journeys.merge(paid, on="user_id")
    stop_at = j["occurred_at"] >= j["first_payment_at"]
    if catalogue.conversion_event is not None:
        stop_at |= j["event_name"] == catalogue.conversion_event
    stop_step = j.loc[stop_at].groupby("user_id")["step_number"].min()
    # As floats: with no converter the mapped column is empty text, and "<" would fail.
    stop = j["user_id"].map(stop_step).astype("float64").fillna(np.inf)
    before = j.loc[j["step_number"] < stop]
    before = before.drop(columns="first_payment_at")
    states = event_states(before, count_events)
    firsts = first_steps(before, catalogue.events)
    nxt = next_new_action(states, firsts, stop_step)
    # Consecutive catalogue events, for the first-order Markov baseline.
    acts = before.loc[before["event_name"].isin(catalogue.events)].sort_values(
        ["user_id", "step_number"], kind="stable"
    )
    transitions = pd.DataFrame(
        {
            "user_id": acts["user_id"].to_numpy(),
            "from": acts["event_name"].to_numpy(),
            "to": acts.groupby("user_id")["event_name"].shift(-1).to_numpy(),
        }
    ).dropna()
    return ConverterPoints(states, nxt, transitions)


def support_from_points(points: ConverterPoints, catalogue: Catalogue, min_similar: int) -> Support:
    """The recommender's support table from converter points."""
    return build_support(points.states, points.next_action, catalogue.events, min_similar)


def _ranked_by_table(
    table: pd.DataFrame, keys: pd.Series, done: pd.DataFrame, actions: list[str], k: int
) -> list[list[str]]:
    """Top-k actions per row from a count table indexed by key, skipping done actions."""
    fallback = table.sum(axis=0)
    ranked = []
    for key, done_row in zip(keys.to_numpy(), done.to_numpy(), strict=True):
        counts = table.loc[key] if key in table.index else fallback
        order = sorted(
            (a for a, flag in zip(actions, done_row, strict=True) if not flag),
            key=lambda a: (-float(counts.get(a, 0)), a),
        )
        ranked.append(order[:k])
    return ranked


def hit_rates(
    train_points: ConverterPoints,
    test_points: ConverterPoints,
    model: Scorer,
    catalogue: Catalogue,
    support: Support,
    min_support: float,
    support_focus: float = 0.0,
    goal: str | None = None,
) -> dict[str, float]:
    """HitRate@1 and @3 of the recommender and both baselines over every cut of test journeys.

    Every point of a held-out converter's journey that a new catalogue action followed is a
    cut; each converter weighs the same however many cuts their journey has. This is the
    expected HitRate of cutting each journey at one random point, without the luck of the draw.

    With no cut to evaluate, a warning (naming `goal` when given) says why.

    Returns:
        Metrics named `hitrate_at_{1,3}_{recommender,popular_at_step,markov}`, plus
        `hitrate_cuts` (points evaluated) and `hitrate_converters` (journeys they come from);
        with no cut, only those two, at 0.
    """
    actions = catalogue.events
    has_next = test_points.next_action.notna()
    cuts = test_points.states.loc[has_next].copy()
    cuts["target"] = test_points.next_action.loc[has_next]
    if cuts.empty:
        # A catalogue of one action, or converters who pay after one step, leave none.
        log.warning(
            "%sHitRate not measured: no point of the journeys of the %d held-out converters "
            "is followed by a catalogue action they had not done (%d actions)",
            "" if goal is None else f"goal {goal!r}: ",
            test_points.states["user_id"].nunique(),
            len(actions),
        )
        return {"hitrate_cuts": 0.0, "hitrate_converters": 0.0}
    cuts = cuts.sort_values(["user_id", "step_number"], kind="stable").reset_index(drop=True)
    weight = 1.0 / cuts.groupby("user_id")["user_id"].transform("size").to_numpy(dtype=float)
    target = cuts["target"].to_numpy()
    keys = similarity_keys(cuts, actions)
    done = keys[[f"done__{a}" for a in actions]].set_axis(actions, axis=1)

    ranked = rank_candidates(cuts, model, catalogue, support, min_support, support_focus)
    ours = top_k(ranked, len(cuts), 3)

    train = train_points.states.assign(next_action=train_points.next_action.to_numpy())
    train = train.loc[train["next_action"].notna()]
    step = train["step_number"].clip(upper=STEP_CAP)
    by_step = pd.crosstab(step, train["next_action"]).reindex(columns=actions, fill_value=0)
    popular = _ranked_by_table(by_step, cuts["step_number"].clip(upper=STEP_CAP), done, actions, 3)
    tr = train_points.transitions
    chain = pd.crosstab(tr["from"], tr["to"]).reindex(columns=actions, fill_value=0)
    markov = _ranked_by_table(chain, cuts["last_action"].astype("object"), done, actions, 3)

    metrics = {
        "hitrate_cuts": float(len(cuts)),
        "hitrate_converters": float(cuts["user_id"].nunique()),
    }
    methods = {"recommender": ours, "popular_at_step": popular, "markov": markov}
    for name, proposals in methods.items():
        for k in (1, 3):
            hits = np.array([t in p[:k] for t, p in zip(target, proposals, strict=True)])
            metrics[f"hitrate_at_{k}_{name}"] = float(np.average(hits, weights=weight))
    covered = np.array([len(p) > 0 for p in ours])
    metrics["hitrate_recommender_coverage"] = float(np.average(covered, weights=weight))
    log.info(
        "HitRate@1 on %d cuts of %d journeys: recommender %.3f, popular at step %.3f, Markov %.3f",
        len(cuts),
        cuts["user_id"].nunique(),
        metrics["hitrate_at_1_recommender"],
        metrics["hitrate_at_1_popular_at_step"],
        metrics["hitrate_at_1_markov"],
    )
    return metrics
