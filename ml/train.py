"""Training: labelled snapshots, a time split by sign-up, the calibrated model and baselines.

Every snapshot a user had before converting (and before their window closed) is a training
row: "from here, will they pay within the window?". Users are split by sign-up time, so the
model is always judged on people who signed up after everyone it learned from.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml.features import FeatureSpec, action_column
from ml.goals import Goal
from ml.metrics import auc_by_bucket, probability_metrics
from ml.model import Calibrator, ConversionModel

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DAY_BUCKETS = [-1, 0, 1, 2, 6, 10_000]
DAY_LABELS = ["day 0", "day 1", "day 2", "days 3-6", "day 7+"]
STEP_BUCKETS = [0, 2, 5, 10, 20, 1_000_000]
STEP_LABELS = ["steps 1-2", "steps 3-5", "steps 6-10", "steps 11-20", "steps 21+"]


class TrainingError(ValueError):
    """The data cannot train a model (too few rows or only one class), with the numbers."""


def label_snapshots(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    goal: Goal,
    data_end: pd.Timestamp,
    conversion_event: str | None = None,
) -> pd.DataFrame:
    """Attach the goal's label to every snapshot and mark the ones fit for training.

    Args:
        features: `fct_user_features` rows.
        labels: `fct_conversion_labels` rows (`user_id`, `signed_up_at`, `first_payment_at`,
            `history_complete`).
        goal: Gives the window; the label is "first payment after the snapshot and within
            `window_days` of sign-up".
        data_end: The latest time the data covers; a window ending later is censored.
        conversion_event: Its count, when a feature column, marks post-payment snapshots.

    Returns:
        The snapshots with `signed_up_at`, `first_payment_at`, `window_ends_at`, `y`,
        `is_open` (the window had not ended at `data_end`) and `trainable` (history complete,
        window over, not yet converted at the snapshot, snapshot inside the window).
    """
    keep = ["user_id", "signed_up_at", "first_payment_at"]
    if "history_complete" not in features.columns and "history_complete" in labels.columns:
        keep.append("history_complete")
    frame = features.merge(labels[keep], on="user_id", how="inner", validate="many_to_one")
    window_end = frame["signed_up_at"] + pd.Timedelta(days=goal.window_days)
    paid = frame["first_payment_at"]
    frame["window_ends_at"] = window_end
    frame["y"] = (paid.notna() & (paid <= window_end)).astype("int8")
    frame["is_open"] = window_end > data_end
    before_payment = paid.isna() | (frame["snapshot_at"] < paid)
    if conversion_event is not None and action_column(conversion_event) in frame.columns:
        before_payment &= frame[action_column(conversion_event)].fillna(0) == 0
    complete = frame["history_complete"].fillna(False).astype(bool)
    frame["trainable"] = (
        complete & ~frame["is_open"] & before_payment & (frame["snapshot_at"] < window_end)
    )
    return frame


def time_split(
    frame: pd.DataFrame,
    valid_fraction: float,
    test_fraction: float,
    embargo: bool = True,
    goal: str | None = None,
) -> pd.Series:
    """Assign each row to train, valid or test by its user's sign-up time.

    Users are ordered by `signed_up_at` (then `user_id`); the earliest go to train, the latest
    to test. With `embargo`, a row whose snapshot is at or after the next split's first
    sign-up is dropped (NA), so no training feature comes from the time the validation users
    were already there, and likewise for validation against test. (Dropping every row whose
    label window reaches into the next split would be stricter, but it empties the
    validation split of logs whose sign-ups come in bursts, such as simple_shop's.)

    Args:
        frame: Rows with `user_id`, `signed_up_at` and `snapshot_at`.
        valid_fraction: Share of users for validation.
        test_fraction: Share of users for test.
        embargo: Drop rows whose snapshot reaches the next split's first sign-up.
        goal: Named in the error, when given.

    Returns:
        "train", "valid", "test" or NA per row.

    Raises:
        TrainingError: Too few users for each split to get at least one.
    """
    users = (
        frame[["user_id", "signed_up_at"]]
        .drop_duplicates("user_id")
        .sort_values(["signed_up_at", "user_id"], kind="stable")
    )
    n = len(users)
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise TrainingError(
            f"{'' if goal is None else f'goal {goal!r}: '}{n} users cannot be split into train, "
            f"valid and test: valid {valid_fraction:.0%} and test {test_fraction:.0%} of them "
            f"give train/valid/test {n_train}/{n_valid}/{n_test}"
        )
    names = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test)
    user_split = pd.Series(names, index=users["user_id"].to_numpy())
    split = frame["user_id"].map(user_split).astype("object")
    if embargo:
        starts = users["signed_up_at"].to_numpy()
        valid_start, test_start = starts[n_train], starts[n_train + n_valid]
        at = frame["snapshot_at"]
        leaks = ((split == "train") & (at >= valid_start)) | (
            (split == "valid") & (at >= test_start)
        )
        split = split.where(~leaks)
    return split


def require_both_classes(
    rows: pd.DataFrame,
    goal: str,
    valid_fraction: float,
    test_fraction: float,
    explain: bool = True,
) -> None:
    """Refuse a split (of `time_split`'s) that is empty or holds a single class.

    Args:
        rows: Rows with `split` (NA where the embargo dropped them), `y`, `user_id`,
            `signed_up_at` and `snapshot_at`.
        goal: Named in the error.
        valid_fraction: As given to `time_split`.
        test_fraction: As given to `time_split`.
        explain: Say how many of the split's rows the embargo dropped (the split must then
            come from `time_split` with these fractions).

    Raises:
        TrainingError: A split has no positive or no negative row, with its counts.
    """
    for name in SPLITS:
        part = rows.loc[rows["split"] == name]
        positives = int(part["y"].sum())
        if 0 < positives < len(part):
            continue
        note = _embargo_note(rows, name, valid_fraction, test_fraction) if explain else ""
        raise TrainingError(
            f"goal {goal!r}: the {name} split has {len(part)} rows and {positives} "
            f"positives; both classes are needed{note}"
        )


def _embargo_note(
    rows: pd.DataFrame, name: str, valid_fraction: float, test_fraction: float
) -> str:
    """Why a split lost rows, for its error; "" when the embargo dropped none of them.

    Says how many rows the embargo dropped and how many of the split's users signed up at
    the next split's first sign-up (contacts imported at one time all do).
    """
    if name == "test" or not rows["split"].isna().any():
        return ""
    whole = time_split(rows, valid_fraction, test_fraction, embargo=False)
    mine = whole == name
    lost = int((mine & rows["split"].isna()).sum())
    if lost == 0:
        return ""
    following = SPLITS[SPLITS.index(name) + 1]
    start = rows.loc[whole == following, "signed_up_at"].min()
    users = rows.loc[mine, ["user_id", "signed_up_at"]].drop_duplicates("user_id")
    tied = int((users["signed_up_at"] >= start).sum())
    return (
        f": {lost:,} of its {int(mine.sum()):,} rows were dropped as their snapshots are at or "
        f"after the {following} split's first sign-up ({start})"
        + (f", when {tied:,} of its {len(users):,} users signed up too" if tied else "")
    )


def day_bucket(frame: pd.DataFrame) -> pd.Series:
    """Days since sign-up as labelled buckets."""
    days = frame["days_since_signup"].astype("float64")
    return pd.cut(days, DAY_BUCKETS, labels=DAY_LABELS)


def step_bucket(frame: pd.DataFrame) -> pd.Series:
    """Steps since sign-up as labelled buckets."""
    return pd.cut(frame["step_number"].astype("float64"), STEP_BUCKETS, labels=STEP_LABELS)


@dataclass
class TrainingResult:
    """A trained model with its splits, metrics and baselines."""

    model: ConversionModel
    metrics: dict[str, float]
    params: dict[str, object]
    splits: dict[str, pd.DataFrame]
    test_scores: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    logreg: object = None


def _logreg_pipeline(seed: int) -> object:
    # Counts and durations are heavy-tailed; the log keeps a linear model from being swamped.
    return make_pipeline(
        FunctionTransformer(_log1p_clipped),
        StandardScaler(),
        LogisticRegression(max_iter=2000, random_state=seed),
    )


def train_goal(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    goal: Goal,
    seed: int = 42,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_rounds: int = 600,
    calibration: str = "isotonic",
    xgb_params: dict[str, object] | None = None,
) -> TrainingResult:
    """Split, fit the calibrated XGBoost model and both baselines, and measure all on test.

    Args:
        frame: Output of `label_snapshots`; only `trainable` rows are used. A `split`
            column, when present, is used as is (NA rows are left out).
        spec: The feature encoding.
        goal: The goal being modelled.
        seed: Seeds the trees' sampling and the logistic regression.
        valid_fraction: Share of users (by sign-up) for early stopping and calibration.
        test_fraction: Share of the latest users for the metrics.
        max_rounds: Upper bound of boosting rounds.
        calibration: "isotonic" or "platt".
        xgb_params: Overrides of the booster's parameters.

    Raises:
        TrainingError: A split is empty or holds a single class.
    """
    # The same rows in any order train the same model: the booster's sampling and histogram
    # sketch, and the logistic regression's solver, follow row order.
    order = [c for c in ("user_id", "snapshot_at", "snapshot_id") if c in frame.columns]
    rows = frame.loc[frame["trainable"]].sort_values(order, kind="stable").copy()
    computed = "split" not in rows.columns
    if computed:
        rows["split"] = time_split(rows, valid_fraction, test_fraction, goal=goal.name)
    # A split given from outside keeps its own reasons for the rows it leaves out.
    require_both_classes(rows, goal.name, valid_fraction, test_fraction, explain=computed)
    dropped = int(rows["split"].isna().sum())
    rows = rows.loc[rows["split"].notna()]
    splits = {name: rows.loc[rows["split"] == name] for name in SPLITS}
    log.info(
        "goal %s: %s rows (train/valid/test), %d rows dropped at split boundaries",
        goal.name,
        "/".join(f"{len(splits[s]):,}" for s in SPLITS),
        dropped,
    )
    x = {name: spec.encode(part) for name, part in splits.items()}
    y = {name: part["y"].to_numpy(dtype=int) for name, part in splits.items()}
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    params = {
        "n_estimators": max_rounds,
        **time_interactions(spec.names),
        # Shallow, well-supported trees that see half the features each: the recommender
        # reads differences between two predictions, and spurious splits on actions that
        # do not matter would turn into spurious lifts.
        "learning_rate": 0.05,
        "max_depth": 4,
        "min_child_weight": 20,
        "gamma": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.5,
        "reg_lambda": 1.0,
        "tree_method": "hist",
        "eval_metric": "logloss",
        "early_stopping_rounds": 40,
        "random_state": seed,
        "n_jobs": 2,
    } | (xgb_params or {})
    booster = xgb.XGBClassifier(**params)
    booster.fit(x["train"], y["train"], eval_set=[(x["valid"], y["valid"])], verbose=False)
    calibrator = Calibrator(calibration).fit(booster.predict_proba(x["valid"])[:, 1], y["valid"])
    model = ConversionModel(spec=spec, booster=booster, calibrator=calibrator, goal=goal.name)
    seconds["xgboost_fit"] = time.perf_counter() - started

    started = time.perf_counter()
    logreg = _logreg_pipeline(seed).fit(x["train"], y["train"])
    seconds["logreg_fit"] = time.perf_counter() - started

    test = splits["test"]
    raw = booster.predict_proba(x["test"])[:, 1]
    scores = {
        "model": calibrator.transform(raw),
        "model_uncalibrated": raw,
        "logreg": logreg.predict_proba(x["test"])[:, 1],
        "base_rate": np.full(len(test), y["train"].mean()),
    }
    metrics: dict[str, float] = {}
    for name, p in scores.items():
        for metric, value in probability_metrics(y["test"], p).items():
            metrics[f"{name}_test_{metric}"] = value
    for bucket_name, buckets in (("days", day_bucket(test)), ("steps", step_bucket(test))):
        for bucket, value in auc_by_bucket(y["test"], scores["model"], buckets).items():
            suffix = bucket.split(" ", 1)[1].replace("+", "_plus")
            metrics[f"model_test_roc_auc_{bucket_name}_{suffix}"] = value
    for name in SPLITS:
        metrics[f"{name}_rows"] = float(len(splits[name]))
        metrics[f"{name}_users"] = float(splits[name]["user_id"].nunique())
        metrics[f"{name}_positive_rate"] = float(y[name].mean())
    metrics["best_iteration"] = float(booster.best_iteration)
    metrics["split_boundary_rows_dropped"] = float(dropped)
    params = {
        "goal": goal.name,
        "window_days": goal.window_days,
        "seed": seed,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "calibration": calibration,
        "n_features": len(spec.names),
        **{f"xgb_{k}": v for k, v in booster.get_params().items() if _loggable(v)},
    }
    log.info(
        "goal %s: test ROC-AUC model %.4f, logistic regression %.4f, base rate %.4f",
        goal.name,
        metrics["model_test_roc_auc"],
        metrics["logreg_test_roc_auc"],
        metrics["base_rate_test_roc_auc"],
    )
    return TrainingResult(model, metrics, params, splits, scores, seconds, logreg)


def time_interactions(names: list[str]) -> dict[str, str]:
    """Booster constraint letting each feature interact with time since sign-up only.

    The recommender reads the difference between two predictions that differ in one action.
    Where trees may combine any features, an action's effect is smeared over proxies (counts,
    steps, other actions) that doing it now moves differently from the data; an effect that
    depends on when it happens (an import that helps only on the first day) still fits.
    """
    if "seconds_since_signup" not in names:
        return {}
    t = names.index("seconds_since_signup")
    return {"interaction_constraints": str([[t, k] for k in range(len(names)) if k != t])}


def _loggable(value: object) -> bool:
    return value is not None and isinstance(value, int | float | str | bool)


def _log1p_clipped(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(x, 0, None))
