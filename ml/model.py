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
    """Maps raw scores to calibrated probabilities: isotonic regression or Platt scaling."""

    def __init__(self, method: str = "isotonic") -> None:
        if method not in ("isotonic", "platt"):
            raise ValueError(f"calibration method {method!r} is not isotonic or platt")
        self.method = method
        self._model: IsotonicRegression | LogisticRegression | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on validation scores and labels."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            self._model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
            self._model.fit(raw, y)
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
            return np.asarray(self._model.predict(raw), dtype=float)
        return self._model.predict_proba(_logit(raw)[:, None])[:, 1]


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
