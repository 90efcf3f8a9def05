import numpy as np

from ml.metrics import expected_calibration_error, probability_metrics, top_decile_lift
from ml.model import Calibrator


def test_ece_of_a_hand_worked_example():
    # bin [0.1, 0.2): predicted 0.1, observed 1/2 -> gap 0.4 on 2 rows
    # bin [0.9, 1.0]: predicted 0.9, observed 2/2 -> gap 0.1 on 2 rows
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, p) == 0.25


def test_top_decile_lift_counts_the_best_tenth_against_the_base_rate():
    # 20 rows, 4 positives (base rate 0.2); the top two scores hold one positive -> 0.5 / 0.2
    y = np.array([1, 0] + [0] * 15 + [1, 1, 1])
    p = np.linspace(1, 0, 20)
    assert top_decile_lift(y, p) == 2.5


def test_a_constant_score_has_no_lift():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert top_decile_lift(y, np.full(10, 0.3)) == 1.0


def test_isotonic_calibration_lowers_the_error_of_distorted_scores():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, truth.size) < truth).astype(int)
    raw = truth**3  # ranks right, probabilities far too low
    fit, held = slice(0, 10_000), slice(10_000, None)
    for method in ("isotonic", "platt"):
        calibrated = Calibrator(method).fit(raw[fit], y[fit]).transform(raw[held])
        before = expected_calibration_error(y[held], raw[held])
        after = expected_calibration_error(y[held], calibrated)
        assert before > 0.15
        assert after < 0.03, method
        # calibration keeps the ranking (up to ties), so ROC-AUC barely moves
        auc_raw = probability_metrics(y[held], raw[held])["roc_auc"]
        auc_cal = probability_metrics(y[held], calibrated)["roc_auc"]
        assert abs(auc_raw - auc_cal) < 0.01


def test_probability_metrics_match_their_definitions_on_a_tiny_case():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = probability_metrics(y, p)
    # pairs (pos, neg): (0.4,0.1) ok, (0.4,0.6) wrong, (0.9,*) ok -> 3 of 4
    assert m["roc_auc"] == 0.75
    assert np.isclose(m["brier"], (0.01 + 0.36 + 0.36 + 0.01) / 4)
    expected_ll = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert np.isclose(m["log_loss"], expected_ll)


def test_isotonic_calibration_keeps_the_steps_at_their_centres_and_breaks_no_order():
    # isotonic fit of y = 0, 1, 0, 1 at 0.1 < 0.2 < 0.3 < 0.4: steps 0 | 0.5, 0.5 | 1
    raw = np.array([0.1, 0.2, 0.3, 0.4])
    calibrator = Calibrator("isotonic").fit(raw, np.array([0, 1, 0, 1]))
    # the middle step's centre in log-odds: mean(log(0.2 / 0.8), log(0.3 / 0.7))
    centre = (np.log(0.25) + np.log(3 / 7)) / 2
    at_centre = calibrator.transform(np.array([1 / (1 + np.exp(-centre))]))
    assert np.isclose(at_centre[0], 0.5)
    # the end steps, 0 and 1, are held half a row (of four) inside: 0.125 and 0.875
    assert np.allclose(calibrator.transform(np.array([0.1, 0.4])), [0.125, 0.875])
    # inside the middle step the two scores stay apart, in their order
    low, high = calibrator.transform(np.array([0.2, 0.3]))
    assert 0.125 < low < 0.5 < high < 0.875
