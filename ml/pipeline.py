"""The model stage end to end: read the marts, train and register, score, recommend, write.

DuckDB connections appear only here, at the edges; everything else takes DataFrames.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml.catalogue import Catalogue, CatalogueError, build_catalogue
from ml.evaluate import ConverterPoints, converter_points, hit_rates, support_from_points
from ml.features import ACTION_PREFIX, action_column, spec_for
from ml.goals import Goal, GoalError, segment_mask
from ml.recommend import Support, recommend
from ml.registry import RegistryOutcome, connect, load_champion, log_and_register, model_input
from ml.settings import MLSettings
from ml.train import (
    TrainingError,
    TrainingResult,
    label_snapshots,
    require_both_classes,
    time_split,
    train_goal,
)

log = logging.getLogger(__name__)

USER_SCORES_COLUMNS = [
    "goal",
    "user_id",
    "snapshot_id",
    "snapshot_at",
    "conversion_score",
    "model_name",
    "model_version",
    "scored_at",
]
NBA_COLUMNS = [
    "goal",
    "user_id",
    "contact_id",
    "external_id",
    "status",
    "action",
    "action_label",
    "lift",
    "conversion_score",
    "alternatives",
    "reason",
    "model_version",
    "scored_at",
]
TRAINING_SET_COLUMNS = ["goal", "user_id", "snapshot_id", "snapshot_at", "y", "split"]


@dataclass
class Marts:
    """The dbt marts the model stage reads."""

    features: pd.DataFrame
    labels: pd.DataFrame
    journeys: pd.DataFrame
    users: pd.DataFrame

    @property
    def data_end(self) -> pd.Timestamp:
        """The data's end ("now" for historical data): the labels' when they state it."""
        if "data_end_at" in self.labels.columns and self.labels["data_end_at"].notna().any():
            return pd.Timestamp(self.labels["data_end_at"].max())
        return pd.Timestamp(self.journeys["occurred_at"].max())

    @property
    def event_names(self) -> list[str]:
        """Every event name in the journeys."""
        return sorted(self.journeys["event_name"].dropna().unique().tolist())

    @property
    def window_days(self) -> int | None:
        """The `conversion_window_days` the marts were built with (None when not stated)."""
        if not {"window_ends_at", "signed_up_at"} <= set(self.labels.columns):
            return None
        spans = (self.labels["window_ends_at"] - self.labels["signed_up_at"]).dropna()
        return round(spans.max().total_seconds() / 86400) if len(spans) else None

    def for_goal(self, goal: Goal) -> Marts:
        """The marts restricted to the goal's segment of users.

        Raises:
            GoalError: The goal's window is longer than the marts' (their snapshots stop at
                the marts' window), or its segment matches no user.
        """
        built = self.window_days
        if built is not None and goal.window_days > built:
            # The settings are checked before the assets run; marts built from the shell
            # with other vars are caught here.
            raise GoalError(
                f"goal {goal.name!r}: window_days {goal.window_days} is longer than the "
                f"{built} days the marts were built with (conversion_window_days): they hold "
                "no snapshots past it"
            )
        if not goal.segment:
            return self
        keep = set(self.users.loc[segment_mask(self.users, goal), "user_id"])
        if not keep:
            # Said here, with the goal, rather than later as "no converters in the data".
            raise GoalError(
                f"goal {goal.name!r}: segment {goal.segment} matches none of the "
                f"{len(self.users):,} users in dim_users"
            )
        return Marts(
            features=self.features.loc[self.features["user_id"].isin(keep)],
            labels=self.labels.loc[self.labels["user_id"].isin(keep)],
            journeys=self.journeys.loc[self.journeys["user_id"].isin(keep)],
            users=self.users.loc[self.users["user_id"].isin(keep)],
        )


def read_marts(con: duckdb.DuckDBPyConnection) -> Marts:
    """Read the four marts from the warehouse."""
    # DuckDB returns rows in no fixed order; sorted, the same warehouse trains the same model.
    journeys = con.execute(
        "select user_id, event_name, occurred_at, session_number, step_number,"
        " seconds_since_signup, days_since_signup from marts.fct_user_journeys"
        " order by user_id, step_number"
    ).df()
    marts = Marts(
        features=con.execute(
            "select * from marts.fct_user_features order by user_id, snapshot_at, snapshot_id"
        ).df(),
        labels=con.execute("select * from marts.fct_conversion_labels order by user_id").df(),
        journeys=journeys,
        users=con.execute("select * from marts.dim_users order by user_id").df(),
    )
    log.info(
        "read %d snapshots, %d labels, %d events, %d users",
        len(marts.features),
        len(marts.labels),
        len(marts.journeys),
        len(marts.users),
    )
    return marts


def catalogue_for(marts: Marts, settings: MLSettings, goal: Goal | None = None) -> Catalogue:
    """The action catalogue of these marts, with the override file when set.

    Raises:
        CatalogueError: As `build_catalogue`, naming the goal when one is given (a segment
            without converters fails here).
    """
    try:
        return build_catalogue(
            marts.journeys,
            marts.labels,
            conversion_event=settings.conversion_event,
            override=settings.catalogue_file,
            min_share=settings.catalogue_min_share,
        )
    except CatalogueError as error:
        # An as_of before any payment leaves no converters: say where it cuts the data.
        no_payer = marts.labels["first_payment_at"].isna().all()
        note = as_of_note(marts, goal.window_days if goal else None) if no_payer else ""
        if goal is None and not note:
            raise
        prefix = "" if goal is None else f"goal {goal.name!r}: "
        raise CatalogueError(f"{prefix}{error}{note}") from None


def as_of_note(marts: Marts, window_days: int | None = None) -> str:
    """Where `as_of` cuts the data, for errors it may cause; "" when it is not set.

    Without `as_of` the labels' data end is the latest event or payment, so a data end before
    the latest event means `as_of` was set (labels and payments stop there, events do not).
    """
    data_end = marts.data_end
    last_event = marts.journeys["occurred_at"].max()
    if pd.isna(last_event) or pd.isna(data_end) or data_end >= last_event:
        return ""
    first_signup = marts.labels["signed_up_at"].min()
    closes = (
        ""
        if window_days is None
        else f", whose {window_days}-day window closes at "
        f"{first_signup + pd.Timedelta(days=window_days)}"
    )
    return (
        f"; the labels end at as_of {int(data_end.timestamp())} ({data_end}; NEXTBEST_AS_OF or "
        f"the dbt var as_of), the earliest sign-up is {first_signup}{closes}, and the events "
        f"run to {last_event}: set as_of later or unset it"
    )


def require_trainable(frame: pd.DataFrame, marts: Marts, goal: Goal) -> None:
    """Refuse a goal with no trainable snapshot, saying why instead of "0 users cannot be split".

    Raises:
        TrainingError: No row of `frame` (from `label_snapshots`) is trainable, with the counts
            of censored users and of incomplete histories, and `as_of` when it is set.
    """
    if frame["trainable"].any():
        return
    users = frame["user_id"].nunique()
    still_open = frame.loc[frame["is_open"], "user_id"].nunique()
    incomplete = frame.loc[~frame["history_complete"].fillna(False).astype(bool), "user_id"]
    note = as_of_note(marts, goal.window_days)
    raise TrainingError(
        f"goal {goal.name!r}: no snapshot can train: {still_open:,} of {users:,} users still "
        f"have their {goal.window_days}-day window open at the data's end {marts.data_end} "
        f"(censored), {incomplete.nunique():,} have an incomplete history{note}"
    )


def training_set(marts: Marts, goal: Goal, settings: MLSettings) -> pd.DataFrame:
    """The goal's labelled, trainable snapshots with their split (`train`, `valid`, `test`)."""
    marts = marts.for_goal(goal)
    catalogue = catalogue_for(marts, settings, goal)
    frame = label_snapshots(
        marts.features, marts.labels, goal, marts.data_end, catalogue.conversion_event
    )
    require_trainable(frame, marts, goal)
    rows = frame.loc[frame["trainable"]].copy()
    rows["split"] = time_split(
        rows, settings.valid_fraction, settings.test_fraction, goal=goal.name
    )
    # Refused here, with the reason, rather than stored for the model step to fail on.
    require_both_classes(rows, goal.name, settings.valid_fraction, settings.test_fraction)
    rows = rows.loc[rows["split"].notna()]
    rows["goal"] = goal.name
    return rows[TRAINING_SET_COLUMNS].reset_index(drop=True)


@dataclass
class GoalRun:
    """A trained, evaluated and registered model of one goal."""

    goal: Goal
    catalogue: Catalogue
    result: TrainingResult
    outcome: RegistryOutcome
    evaluation: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def train_and_register(
    marts: Marts,
    goal: Goal,
    settings: MLSettings,
    tracking_uri: str,
    artifact_root: Path,
    split: pd.DataFrame | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> GoalRun:
    """Train the goal's model, evaluate the recommender, log all to MLflow, register, promote.

    Args:
        marts: The marts.
        goal: Which goal.
        settings: Model settings.
        tracking_uri: MLflow tracking and registry store.
        artifact_root: Folder for run artifacts (one sub-folder per goal).
        split: A stored training set (`snapshot_id`, `split`); computed when None.
        extra_metrics: Further numbers to log in the same run (e.g. a synthetic check).
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    marts = marts.for_goal(goal)
    catalogue = catalogue_for(marts, settings, goal)
    frame = label_snapshots(
        marts.features, marts.labels, goal, marts.data_end, catalogue.conversion_event
    )
    require_trainable(frame, marts, goal)
    if split is not None:
        frame = frame.merge(split[["snapshot_id", "split"]], on="snapshot_id", how="left")
        frame["trainable"] &= frame["split"].notna()
    excluded = [catalogue.conversion_event] if catalogue.conversion_event else []
    spec = spec_for(marts.features, catalogue.events, excluded)
    result = train_goal(
        frame,
        spec,
        goal,
        seed=settings.seed,
        valid_fraction=settings.valid_fraction,
        test_fraction=settings.test_fraction,
        max_rounds=settings.max_rounds,
        calibration=settings.calibration,
    )
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    count_events = count_events_of(marts.features, marts.event_names, excluded)
    known = set(result.splits["train"]["user_id"]) | set(result.splits["valid"]["user_id"])
    train_points = converter_points(
        marts.journeys, marts.labels, catalogue, count_events, users=known
    )
    held_out = set(result.splits["test"]["user_id"])
    test_points = converter_points(
        marts.journeys, marts.labels, catalogue, count_events, users=held_out
    )
    support = support_from_points(train_points, catalogue, settings.min_similar)
    evaluation = hit_rates(
        train_points,
        test_points,
        result.model,
        catalogue,
        support,
        settings.min_support,
        settings.support_focus,
        goal=goal.name,
    )
    seconds["evaluate"] = time.perf_counter() - started

    started = time.perf_counter()
    client = connect(tracking_uri)
    outcome = log_and_register(
        result,
        goal,
        catalogue,
        client,
        artifact_root,
        settings.promotion_margin,
        extra_metrics={**evaluation, **(extra_metrics or {})},
        extra_params={
            "conversion_event": catalogue.conversion_event,
            "catalogue_size": len(catalogue.events),
            "catalogue_source": catalogue.source,
            "min_support": settings.min_support,
            "min_similar": settings.min_similar,
            "support_focus": settings.support_focus,
            "segment": str(goal.segment or "everyone"),
        },
    )
    seconds["mlflow"] = time.perf_counter() - started
    return GoalRun(goal, catalogue, result, outcome, evaluation, seconds)


def count_events_of(features: pd.DataFrame, events: list[str], excluded: list[str]) -> list[str]:
    """Events whose counts are feature columns (the mart caps how many get one)."""
    columns = {c for c in features.columns if c.startswith(ACTION_PREFIX)}
    return [e for e in events if e not in excluded and action_column(e) in columns]


def latest_states(marts: Marts) -> pd.DataFrame:
    """Each user's latest snapshot."""
    return (
        marts.features.sort_values(["user_id", "snapshot_at", "snapshot_id"], kind="stable")
        .drop_duplicates("user_id", keep="last")
        .reset_index(drop=True)
    )


def score_users(
    marts: Marts, goal: Goal, tracking_uri: str, scored_at: datetime | None = None
) -> pd.DataFrame:
    """`ml.user_scores` rows: every user of the goal at their latest snapshot, by the champion."""
    connect(tracking_uri)
    marts = marts.for_goal(goal)
    champion, version = load_champion(goal.model_name)
    states = latest_states(marts)
    model = champion.unwrap_python_model().model
    scores = np.asarray(champion.predict(model_input(model, states)), dtype=float)
    return pd.DataFrame(
        {
            "goal": goal.name,
            "user_id": states["user_id"].to_numpy(),
            "snapshot_id": states["snapshot_id"].to_numpy(),
            "snapshot_at": states["snapshot_at"].to_numpy(),
            "conversion_score": scores,
            "model_name": goal.model_name,
            "model_version": version,
            "scored_at": scored_at or datetime.now(UTC).replace(tzinfo=None),
        }
    )[USER_SCORES_COLUMNS]


def production_support(
    marts: Marts, catalogue: Catalogue, settings: MLSettings, goal: Goal | None = None
) -> Support:
    """Support from every converter whose history is complete.

    With none, the support is empty (no action is proposed) and a warning says why.
    """
    complete = marts.labels.loc[marts.labels["history_complete"].fillna(False).astype(bool)]
    if complete["first_payment_at"].isna().all():
        log.warning(
            "%snone of the %d converters has a complete history (events recorded since "
            "sign-up): no action has support, and no open user gets a recommendation",
            "" if goal is None else f"goal {goal.name!r}: ",
            int(marts.labels["first_payment_at"].notna().sum()),
        )
    excluded = [catalogue.conversion_event] if catalogue.conversion_event else []
    points: ConverterPoints = converter_points(
        marts.journeys,
        complete,
        catalogue,
        count_events_of(marts.features, marts.event_names, excluded),
    )
    return support_from_points(points, catalogue, settings.min_similar)


def known_to(model: object, catalogue: Catalogue, goal: Goal, version: str) -> Catalogue:
    """The catalogue without the actions the champion was not trained on, with a warning.

    An event that joined the catalogue after the champion was trained is "other" to it: the
    lift it gives for doing the action would rest on nothing the model learnt about it.

    Raises:
        CatalogueError: The champion knows none of the catalogue's actions.
    """
    known = set(model.spec.action_events)
    unknown = [event for event in catalogue.events if event not in known]
    if not unknown:
        return catalogue
    if len(unknown) == len(catalogue.events):
        raise CatalogueError(
            f"goal {goal.name!r}: champion version {version} was trained on none of the "
            f"{len(unknown)} catalogue actions {unknown[:10]} (it knows "
            f"{sorted(known)[:10]}): train a model on the current marts"
        )
    log.warning(
        "goal %r: champion version %s was not trained on the catalogue action(s) %s: they are "
        "not proposed until a model that knows them is champion",
        goal.name,
        version,
        unknown,
    )
    actions = tuple(action for action in catalogue.actions if action.event in known)
    return Catalogue(actions, catalogue.conversion_event, catalogue.source)


def next_best_actions(
    marts: Marts,
    goal: Goal,
    settings: MLSettings,
    tracking_uri: str,
    as_of: pd.Timestamp | None = None,
    scored_at: datetime | None = None,
) -> pd.DataFrame:
    """`ml.next_best_actions` rows: one per user of the goal, with a status for each.

    Converted users get `converted`; users whose window has ended at `as_of` (default: the
    data's end) get `window_closed`; every other user gets a recommendation or the reason
    there is none.
    """
    connect(tracking_uri)
    marts = marts.for_goal(goal)
    as_of = as_of if as_of is not None else marts.data_end
    champion, version = load_champion(goal.model_name)
    model = champion.unwrap_python_model().model
    catalogue = known_to(model, catalogue_for(marts, settings, goal), goal, version)
    users = marts.users[["user_id", "contact_id", "external_id"]].merge(
        marts.labels[["user_id", "signed_up_at", "first_payment_at"]], on="user_id", how="left"
    )
    window_end = users["signed_up_at"] + pd.Timedelta(days=goal.window_days)
    status = np.where(
        users["first_payment_at"].notna() & (users["first_payment_at"] <= as_of),
        "converted",
        np.where(window_end.isna() | (window_end <= as_of), "window_closed", "open"),
    )
    users["status"] = status
    open_users = users.loc[users["status"] == "open", ["user_id"]]
    states = open_users.merge(latest_states(marts), on="user_id", how="left")
    # A user who signed up but did nothing yet starts from an empty journey.
    empty = states["snapshot_at"].isna()
    for column in states.columns:
        if column.startswith(ACTION_PREFIX) or column in ("n_events", "step_number"):
            states.loc[empty, column] = 0
    support = production_support(marts, catalogue, settings, goal)
    recs = recommend(
        states,
        model,
        catalogue,
        support,
        settings.min_support,
        goal.window_days,
        settings.support_focus,
    )
    scored_at = scored_at or datetime.now(UTC).replace(tzinfo=None)
    closed = users.loc[users["status"] != "open"].copy()
    closed["reason"] = np.where(
        closed["status"] == "converted",
        "already converted",
        f"the {goal.window_days}-day window after sign-up has ended",
    )
    closed["alternatives"] = "[]"
    out = pd.concat(
        [closed, recs.merge(users[["user_id", "contact_id", "external_id"]], on="user_id")],
        ignore_index=True,
    )
    out["goal"] = goal.name
    out["model_version"] = version
    out["scored_at"] = scored_at
    for column in NBA_COLUMNS:
        if column not in out.columns:
            out[column] = None
    log.info(
        "goal %s: %s",
        goal.name,
        ", ".join(f"{k} {v:,}" for k, v in out["status"].value_counts().items()),
    )
    return out[NBA_COLUMNS].reset_index(drop=True)


def write_goal_rows(
    con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, goal: str
) -> int:
    """Replace one goal's rows of an `ml` table with `frame` in one transaction.

    Returns:
        Rows written.
    """
    con.execute("create schema if not exists ml")
    con.execute("begin transaction")
    try:
        con.register("_incoming", frame)
        con.execute(f"create table if not exists ml.{table} as select * from _incoming limit 0")
        con.execute(f"delete from ml.{table} where goal = ?", [goal])
        con.execute(f"insert into ml.{table} by name select * from _incoming")
        con.unregister("_incoming")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return len(frame)
