"""The conversion model: feature encoding, gradient-boosted trees and a calibrator in one object.

Keeping the three together means whoever loads the model from the registry scores calibrated
probabilities from mart rows, with no separate preprocessing to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from ml.features import FeatureSpec


class Calibrator:
    """Maps raw scores to calibrated probabilities: isotonic regression or Platt scaling.

    Isotonic regression alone is a step function: every score inside a step gets the same
    probability, and those ties cost ROC-AUC (figures in docs/models.md). So the isotonic
    calibrator is made strictly increasing: each step becomes a knot at the mean log-odds of
    its raw scores, and the probability is interpolated linearly in log-odds between knots
    (and extended along the end segments beyond them). The calibrated values stay those of
    the steps at their centres, and the order of the raw scores is kept.
    """

    def __init__(self, method: str = "isotonic") -> None:
        if method not in ("isotonic", "platt"):
            raise ValueError(f"calibration method {method!r} is not isotonic or platt")
        self.method = method
        self._model: IsotonicRegression | LogisticRegression | None = None
        self._knots: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on validation scores and labels."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            self._model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
            self._model.fit(raw, y)
            self._knots = _step_centres(raw, self._model.predict(raw))
        else:
            self._model = LogisticRegression(C=1e6)
            self._model.fit(_logit(raw)[:, None], y)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw scores."""
        if self._model is None:
            raise RuntimeError("the calibrator is not fitted")
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            knots = getattr(self, "_knots", None)  # absent in calibrators pickled before
            if knots is None:
                return np.asarray(self._model.predict(raw), dtype=float)
            return _interpolate_log_odds(knots, raw)
        return self._model.predict_proba(_logit(raw)[:, None])[:, 1]


def _step_centres(raw: np.ndarray, fitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (mean log-odds of the raw scores, log-odds of the value) of isotonic steps."""
    order = np.argsort(raw, kind="stable")
    x, value = _logit(raw[order]), fitted[order]
    starts = np.flatnonzero(np.r_[True, np.diff(value) != 0])
    centres = np.add.reduceat(x, starts) / np.diff(np.r_[starts, len(x)])
    # Steps at exactly 0 or 1 (no positive, or no negative, below or above a score) would be
    # infinite in log-odds; half a row of the fitting set is the smallest rate it can tell.
    eps = 0.5 / len(x)
    return centres, _logit(np.clip(value[starts], eps, 1 - eps))


def _interpolate_log_odds(knots: tuple[np.ndarray, np.ndarray], raw: np.ndarray) -> np.ndarray:
    """Probabilities from knots, linear in log-odds between them and along the end segments."""
    xs, ys = knots
    x = _logit(raw)
    if len(xs) == 1:
        return np.full(len(x), 1 / (1 + np.exp(-ys[0])))
    out = np.interp(x, xs, ys)
    low, high = x < xs[0], x > xs[-1]
    out[low] = ys[0] + (x[low] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    out[high] = ys[-1] + (x[high] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return 1 / (1 + np.exp(-out))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class ConversionModel:
    """Encoding, booster and calibrator: mart rows in, calibrated probabilities out.

    Attributes:
        spec: How mart rows become the feature matrix.
        booster: A fitted `xgboost.XGBClassifier`.
        calibrator: Fitted on the validation split.
        goal: The goal the model predicts.
    """

    spec: FeatureSpec
    booster: object
    calibrator: Calibrator
    goal: str

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities from the trees."""
        if len(frame) == 0:
            return np.zeros(0)
        return self.booster.predict_proba(self.spec.encode(frame))[:, 1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of converting within the goal's window."""
        return self.calibrator.transform(self.raw_scores(frame))
