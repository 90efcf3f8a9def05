"""Checks against a planted ground truth (the synthetic dataset), when one is known.

The truth object is duck-typed: `catalogue` (action names) and
`best_actions(done_mask, seconds_since_signup) -> (names, probabilities, gains)`, as
`sandbox.synthetic.SyntheticTruth` provides.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from ml.features import action_column
from ml.metrics import safe_auc


def done_mask(states: pd.DataFrame, actions: list[str]) -> np.ndarray:
    """Which of `actions` each state has done, from its count columns."""
    columns = []
    for action in actions:
        column = action_column(action)
        if column in states.columns:
            columns.append(pd.to_numeric(states[column]).fillna(0).to_numpy() > 0)
        else:
            columns.append(np.zeros(len(states), dtype=bool))
    return np.column_stack(columns) if columns else np.zeros((len(states), 0), dtype=bool)


def true_best(states: pd.DataFrame, truth: object) -> tuple[list[str], np.ndarray]:
    """The planted best action and true conversion probability of each state."""
    mask = done_mask(states, list(truth.catalogue))
    seconds = pd.to_numeric(states["seconds_since_signup"]).to_numpy(dtype=float)
    names, probability, _ = truth.best_actions(mask, seconds)
    return list(names), np.asarray(probability, dtype=float)


def auc_gap(test: pd.DataFrame, model_scores: np.ndarray, truth: object) -> dict[str, float]:
    """Test ROC-AUC of the model against that of the true probabilities on the same rows."""
    y = test["y"].to_numpy(dtype=int)
    _, probability = true_best(test, truth)
    model_auc = safe_auc(y, model_scores)
    true_auc = safe_auc(y, probability)
    return {
        "synthetic_model_test_roc_auc": model_auc,
        "synthetic_true_probability_test_roc_auc": true_auc,
        "synthetic_roc_auc_gap": true_auc - model_auc,
    }


def planted_agreement(
    recommendations: pd.DataFrame, states: pd.DataFrame, truth: object
) -> dict[str, float]:
    """Share of open, unconverted users whose next best action is the planted best action.

    Args:
        recommendations: `recommend` output, aligned with `states` (same users, same order).
        states: The states the recommendations were made for.
        truth: The planted truth.
    """
    best, _ = true_best(states, truth)
    ours = recommendations["action"].astype("object").to_numpy()
    hits = np.array([a == b for a, b in zip(ours, best, strict=True)])
    recommended = recommendations["status"].to_numpy() == "recommended"
    return {
        "synthetic_users_checked": float(len(states)),
        "synthetic_planted_best_agreement": float(hits.mean()) if len(hits) else float("nan"),
        "synthetic_planted_best_agreement_when_recommended": (
            float(hits[recommended].mean()) if recommended.any() else float("nan")
        ),
        "synthetic_recommended_share": float(recommended.mean()) if len(hits) else float("nan"),
    }


def true_gains(states: pd.DataFrame, truth: object) -> np.ndarray:
    """The truth's gain of doing each catalogue action now (users x actions; -inf if done).

    Needs a truth with `_probabilities(done_mask, hours)`, as `SyntheticTruth` has.
    """
    mask = done_mask(states, list(truth.catalogue))
    hours = pd.to_numeric(states["seconds_since_signup"]).to_numpy(dtype=float) / 3600.0
    _, gain = truth._probabilities(mask, hours)
    return np.asarray(gain, dtype=float)


def agreement_by_time(
    recommendations: pd.DataFrame,
    states: pd.DataFrame,
    truth: object,
    candidates: pd.DataFrame | None = None,
    edges_hours: tuple[float, ...] = (24.0, 48.0),
    near_tie: float = 0.1,
) -> pd.DataFrame:
    """Where the recommendation misses the planted best action, by hours since sign-up.

    The synthetic key actions help only within the first 24 or 48 hours, so agreement is
    read per band of time. A miss is a near tie when the truth's gain of the chosen action
    is within `near_tie` (relative) of the best gain: those the data can hardly tell apart.

    Args:
        recommendations: `recommend` output aligned with `states`.
        states: The states recommended for (with `seconds_since_signup`).
        truth: The planted truth (see `true_gains`).
        candidates: `rank_candidates` output for `states`; when given, `planted_supported`
            is the share whose planted action was among the supported candidates.
        edges_hours: Band edges in hours.
        near_tie: Relative gain difference under which a miss counts as a near tie.

    Returns:
        One row per band (and an `all` row): `users`, `agreement`, `planted_supported`,
        `near_tie_misses`, `mean_gain_lost` (truth's best gain minus the chosen action's,
        0 for hits, the whole best gain where nothing was recommended).
    """
    gains = true_gains(states, truth)
    index = {a: k for k, a in enumerate(truth.catalogue)}
    best, _ = true_best(states, truth)
    best_gain = np.where(np.isfinite(gains), gains, -np.inf).max(axis=1)
    ours = recommendations["action"].astype("object").to_numpy()
    chosen = np.array(
        [gains[k, index[a]] if a in index else 0.0 for k, a in enumerate(ours)], dtype=float
    )
    hit = np.array([a == b for a, b in zip(ours, best, strict=True)])
    lost = np.where(hit, 0.0, best_gain - chosen)
    with np.errstate(divide="ignore", invalid="ignore"):
        tie = ~hit & (lost <= near_tie * np.abs(best_gain)) & np.isin(ours, list(index))
    supported = np.full(len(states), np.nan)
    if candidates is not None:
        pairs = set(zip(candidates["row"].astype(int), candidates["action"], strict=True))
        supported = np.array([(k, b) in pairs for k, b in enumerate(best)], dtype=float)
    hours = pd.to_numeric(states["seconds_since_signup"]).to_numpy(dtype=float) / 3600.0
    edges = [0.0, *edges_hours, np.inf]
    bands = [
        (f"{lo:g}-{hi:g}h" if np.isfinite(hi) else f">={lo:g}h", (hours >= lo) & (hours < hi))
        for lo, hi in pairwise(edges)
    ]
    frames = []
    for name, m in [*bands, ("all", np.ones(len(hours), dtype=bool))]:
        frames.append(
            {
                "band": name,
                "users": int(m.sum()),
                "agreement": float(hit[m].mean()) if m.any() else np.nan,
                "planted_supported": float(supported[m].mean()) if m.any() else np.nan,
                "near_tie_misses": int(tie[m].sum()),
                "mean_gain_lost": float(lost[m].mean()) if m.any() else np.nan,
            }
        )
    return pd.DataFrame(frames)
