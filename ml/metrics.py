"""Metrics of a probability model on a labelled split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean gap between predicted and observed rates over equal-width bins, weighted by size."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0, 1)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(p[members].mean() - y[members].mean())
    return float(total / max(len(y), 1))


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the top tenth by score, over the overall positive rate."""
    y = np.asarray(y, dtype=float)
    base = y.mean()
    if base == 0:
        return float("nan")
    p = np.asarray(p, dtype=float)
    # Rows tied with the tenth-best score are all in or all out: ties carry no ranking, so a
    # constant score has a lift of exactly 1.
    threshold = np.sort(p)[::-1][max(1, int(np.ceil(len(y) / 10))) - 1]
    top = p >= threshold
    return float(y[top].mean() / base)


def safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC, or NaN when only one class is present."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier score, ECE and top-decile lift."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": safe_auc(y, p),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "top_decile_lift": top_decile_lift(y, p),
    }


def auc_by_bucket(y: np.ndarray, p: np.ndarray, bucket: pd.Series) -> dict[str, float]:
    """ROC-AUC within each bucket (e.g. days since sign-up), where both classes occur."""
    frame = pd.DataFrame({"y": np.asarray(y), "p": np.asarray(p), "b": bucket.to_numpy()})
    out = {}
    for name, part in frame.groupby("b", sort=True, observed=True):
        auc = safe_auc(part["y"].to_numpy(), part["p"].to_numpy())
        if not np.isnan(auc):
            out[str(name)] = auc
    return out
