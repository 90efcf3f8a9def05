"""Figures logged with each training run: calibration, precision-recall, feature importance."""

from __future__ import annotations

# Figures are built without pyplot, so no GUI backend is chosen and no global state changes;
# saving them goes through the Agg canvas.
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve


def calibration_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Observed against predicted conversion rate per score bin, one line per model."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for name, p in scores.items():
        observed, predicted = calibration_curve(y, np.clip(p, 0, 1), n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed conversion rate")
    ax.set_title("Calibration on the test split")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def precision_recall_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Precision against recall, one line per model."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
    ax.axhline(float(np.mean(y)), color="grey", linestyle=":", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall on the test split")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def importance_figure(names: list[str], importance: np.ndarray, top: int = 20) -> Figure:
    """The most important features by gain share."""
    order = np.argsort(importance)[::-1][:top][::-1]
    fig = Figure(figsize=(7, 0.3 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh([names[i] for i in order], importance[order])
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return fig
