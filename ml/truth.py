"""Checks against a planted ground truth (the synthetic dataset), when one is known.

The truth object is duck-typed: `catalogue` (action names) and
`best_actions(done_mask, seconds_since_signup) -> (names, probabilities, gains)`, as
`sandbox.synthetic.SyntheticTruth` provides.
"""

from __future__ import annotations

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
