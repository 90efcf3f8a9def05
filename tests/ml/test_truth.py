"""Agreement with a planted truth, read by time since sign-up."""

import numpy as np
import pandas as pd
import pytest

from ml.truth import agreement_by_time


class EarlyTruth:
    """Two actions: `a` gains 0.30 within the first 24 hours and nothing after; `b` 0.10."""

    catalogue = ("a", "b")

    def _probabilities(self, done, hours):
        gain = np.column_stack([np.where(hours < 24, 0.30, 0.0), np.full(len(hours), 0.10)])
        return np.full(len(hours), 0.2), np.where(done, -np.inf, gain)

    def best_actions(self, done, seconds):
        probability, gain = self._probabilities(done, np.asarray(seconds) / 3600.0)
        best = np.argmax(gain, axis=1)
        return [self.catalogue[k] for k in best], probability, gain.max(axis=1)


def test_agreement_by_time_splits_hits_misses_and_support_by_band():
    hours = [1, 5, 30, 60, 70]
    states = pd.DataFrame(
        {
            "seconds_since_signup": [h * 3600 for h in hours],
            "n_action__a": [0, 0, 0, 0, 1],
            "n_action__b": [0, 0, 0, 0, 0],
        }
    )
    # planted: a, a (early); b, b, b (late, or `a` already done)
    recs = pd.DataFrame({"action": ["a", "b", "b", "a", None]})
    candidates = pd.DataFrame({"row": [0, 1, 1, 2, 3], "action": ["a", "a", "b", "b", "a"]})
    table = agreement_by_time(recs, states, EarlyTruth(), candidates).set_index("band")
    assert list(table.index) == ["0-24h", "24-48h", ">=48h", "all"]
    assert table.loc["0-24h", "users"] == 2
    assert table.loc["0-24h", "agreement"] == pytest.approx(0.5)
    assert table.loc["0-24h", "mean_gain_lost"] == pytest.approx((0 + 0.20) / 2)
    assert table.loc["24-48h", "agreement"] == pytest.approx(1.0)
    # row 3 chose `a` (gain 0 late), row 4 got nothing: both lose the whole 0.10
    assert table.loc[">=48h", "agreement"] == pytest.approx(0.0)
    assert table.loc[">=48h", "mean_gain_lost"] == pytest.approx(0.10)
    # planted among the candidates: rows 0, 1, 2 yes; rows 3 and 4 (b) no
    assert table.loc["all", "planted_supported"] == pytest.approx(3 / 5)
    assert table.loc[">=48h", "planted_supported"] == pytest.approx(0.0)
    assert table.loc["all", "agreement"] == pytest.approx(2 / 5)
    assert table["near_tie_misses"].sum() == 0


def test_a_miss_by_a_hair_counts_as_a_near_tie():
    class Close(EarlyTruth):
        def _probabilities(self, done, hours):
            gain = np.column_stack([np.full(len(hours), 0.100), np.full(len(hours), 0.095)])
            return np.full(len(hours), 0.2), np.where(done, -np.inf, gain)

    states = pd.DataFrame({"seconds_since_signup": [3600.0, 3600.0], "n_action__a": [0, 0]})
    recs = pd.DataFrame({"action": ["b", "a"]})
    table = agreement_by_time(recs, states, Close()).set_index("band")
    assert table.loc["all", "near_tie_misses"] == 1
    assert table.loc["all", "mean_gain_lost"] == pytest.approx(0.005 / 2)
    assert np.isnan(table.loc["all", "planted_supported"])
