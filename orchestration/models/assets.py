"""The model stage's assets: thin wrappers that read the marts, call `ml`, write `ml.*`."""

from typing import Any

import dagster as dg
import pandas as pd

from ml import pipeline
from ml.checks import completed_actions_recommended, open_users_without_outcome
from ml.goals import Goal, check_marts_window, load_goals
from ml.pipeline import (
    TRAINING_SET_COLUMNS,
    Marts,
    latest_states,
    read_marts,
    score_users,
    train_and_register,
    write_goal_rows,
)
from orchestration.models.settings import MLSettings, get_ml_settings
from orchestration.settings import Settings, get_settings
from orchestration.warehouse import warehouse

MART_KEYS = [
    dg.AssetKey(name)
    for name in ("fct_user_features", "fct_conversion_labels", "fct_user_journeys", "dim_users")
]
TRAINING_SET = dg.AssetKey("training_set")
CONVERSION_MODEL = dg.AssetKey("conversion_model")
USER_SCORES = dg.AssetKey("user_scores")
NEXT_BEST_ACTIONS = dg.AssetKey("next_best_actions")


def _context() -> tuple[Settings, MLSettings, list[Goal]]:
    settings, ml = get_settings(), get_ml_settings()
    goals = load_goals(ml.goals_file)
    check_marts_window(goals, settings.conversion_window_days)
    return settings, ml, goals


def _marts(settings: Settings) -> Marts:
    with warehouse(settings.warehouse, read_only=True) as con:
        return read_marts(con)


@dg.asset(
    owners=["team:ml"],
    key=TRAINING_SET,
    group_name="ml",
    deps=MART_KEYS,
    kinds={"duckdb", "pandas"},
    description="Every goal's labelled training snapshots and their time split by sign-up "
    "(train, valid, test; no user in two splits), in ml.training_set.",
)
def training_set(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Label the snapshots of every goal and split them by sign-up time."""
    settings, ml, goals = _context()
    marts = _marts(settings)
    frames = [pipeline.training_set(marts, goal, ml) for goal in goals]
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=TRAINING_SET_COLUMNS)
    )
    with warehouse(settings.warehouse) as con:
        for goal in goals:
            write_goal_rows(con, "training_set", rows.loc[rows["goal"] == goal.name], goal.name)
    metadata: dict[str, Any] = {"rows": len(rows), "goals": [g.name for g in goals]}
    for (goal, split), part in rows.groupby(["goal", "split"]):
        metadata[f"{goal}/{split}_rows"] = len(part)
        metadata[f"{goal}/{split}_users"] = int(part["user_id"].nunique())
        metadata[f"{goal}/{split}_positive_rate"] = round(float(part["y"].mean()), 4)
    context.log.info(f"training set: {len(rows):,} snapshots over {len(goals)} goal(s)")
    return dg.MaterializeResult(metadata=metadata)


def hitrate_metadata(goal: str, evaluation: dict[str, float]) -> dict[str, Any]:
    """The offline evaluation's cuts and HitRate@1s as metadata.

    A HitRate not measured (no cut to evaluate; a warning says why) is left out, not NaN.
    """
    metadata: dict[str, Any] = {f"{goal}/hitrate_cuts": int(evaluation.get("hitrate_cuts", 0))}
    for name in ("hitrate_at_1_recommender", "hitrate_at_1_popular_at_step", "hitrate_at_1_markov"):
        if name in evaluation:
            metadata[f"{goal}/{name}"] = round(evaluation[name], 4)
    return metadata


@dg.asset(
    owners=["team:ml"],
    key=CONVERSION_MODEL,
    group_name="ml",
    deps=[TRAINING_SET],
    kinds={"xgboost", "mlflow"},
    description="A calibrated XGBoost model per goal, logged to MLflow with its baselines and "
    "offline evaluation, registered as nextbest-<goal> (alias challenger; champion when it "
    "beats the current one by the promotion margin).",
    check_specs=[
        dg.AssetCheckSpec(
            "test_roc_auc_above_floor",
            asset=CONVERSION_MODEL,
            description="The new model's test ROC-AUC is at least NEXTBEST_AUC_FLOOR.",
        )
    ],
)
def conversion_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Train, evaluate, log and register each goal's model."""
    settings, ml, goals = _context()
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    marts = _marts(settings)
    with warehouse(settings.warehouse, read_only=True) as con:
        split = con.execute("select * from ml.training_set").df()
    metadata: dict[str, Any] = {}
    lowest = 1.0
    for goal in goals:
        run = train_and_register(
            marts,
            goal,
            ml,
            settings.tracking_uri,
            settings.mlflow_dir / "artifacts",
            split=split.loc[split["goal"] == goal.name],
        )
        m, outcome = run.result.metrics, run.outcome
        lowest = min(lowest, m["model_test_roc_auc"])
        metadata |= {
            f"{goal.name}/mlflow_run_id": outcome.run_id,
            f"{goal.name}/model_version": outcome.version,
            f"{goal.name}/alias": "champion" if outcome.promoted else "challenger",
            f"{goal.name}/champion_version": outcome.champion_version,
            f"{goal.name}/promotion": outcome.decision,
            f"{goal.name}/test_roc_auc": round(m["model_test_roc_auc"], 4),
            f"{goal.name}/logreg_test_roc_auc": round(m["logreg_test_roc_auc"], 4),
            f"{goal.name}/base_rate_test_roc_auc": round(m["base_rate_test_roc_auc"], 4),
            f"{goal.name}/test_ece": round(m["model_test_ece"], 4),
            **hitrate_metadata(goal.name, run.evaluation),
            f"{goal.name}/catalogue": run.catalogue.events,
        }
        context.log.info(
            f"{goal.model_name} v{outcome.version}: test ROC-AUC "
            f"{m['model_test_roc_auc']:.4f} (logistic regression {m['logreg_test_roc_auc']:.4f});"
            f" {outcome.decision}"
        )
    check = dg.AssetCheckResult(
        check_name="test_roc_auc_above_floor",
        passed=bool(lowest >= ml.auc_floor),
        metadata={"lowest_test_roc_auc": round(lowest, 4), "floor": ml.auc_floor},
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


@dg.asset(
    owners=["team:ml"],
    key=USER_SCORES,
    group_name="ml",
    # The marts too: runs that skip training (incremental, live) must score fresh snapshots.
    deps=[CONVERSION_MODEL, *MART_KEYS],
    kinds={"duckdb", "mlflow"},
    description="Every user's probability of converting within each goal's window at their "
    "latest snapshot, scored by models:/nextbest-<goal>@champion, in ml.user_scores.",
)
def user_scores(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Score every user of every goal with the goal's champion."""
    settings, _, goals = _context()
    marts = _marts(settings)
    metadata: dict[str, Any] = {}
    for goal in goals:
        scores = score_users(marts, goal, settings.tracking_uri)
        with warehouse(settings.warehouse) as con:
            write_goal_rows(con, "user_scores", scores, goal.name)
        version = str(scores["model_version"].iloc[0]) if len(scores) else ""
        metadata |= {
            f"{goal.name}/users": len(scores),
            f"{goal.name}/model_version": version,
            f"{goal.name}/mean_score": round(float(scores["conversion_score"].mean()), 4),
        }
        context.log.info(f"scored {len(scores):,} users for {goal.name}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    owners=["team:ml"],
    key=NEXT_BEST_ACTIONS,
    group_name="ml",
    deps=[CONVERSION_MODEL, USER_SCORES, *MART_KEYS],
    kinds={"duckdb", "mlflow"},
    description="One row per user and goal: the next best action with its label, lift, score, "
    "alternatives and reason, or the status saying why there is none, in ml.next_best_actions.",
    check_specs=[
        dg.AssetCheckSpec(
            "no_completed_action_recommended",
            asset=NEXT_BEST_ACTIONS,
            description="No recommendation or alternative is an action the user already did.",
        ),
        dg.AssetCheckSpec(
            "every_open_user_has_action_or_reason",
            asset=NEXT_BEST_ACTIONS,
            description="Every unconverted user whose window is open has a recommendation or "
            "a stated reason for none.",
        ),
    ],
)
def next_best_actions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Recommend the next best action of every open, unconverted user of every goal."""
    settings, ml, goals = _context()
    marts = _marts(settings)
    metadata: dict[str, Any] = {}
    completed: list[pd.DataFrame] = []
    missing: list[str] = []
    for goal in goals:
        rows = pipeline.next_best_actions(marts, goal, ml, settings.tracking_uri)
        with warehouse(settings.warehouse) as con:
            write_goal_rows(con, "next_best_actions", rows, goal.name)
        counts = rows["status"].value_counts()
        metadata |= {f"{goal.name}/{status}": int(n) for status, n in counts.items()}
        top = rows.loc[rows["status"] == "recommended", "action"].value_counts().head(5)
        metadata[f"{goal.name}/top_actions"] = {str(k): int(v) for k, v in top.items()}
        goal_marts = marts.for_goal(goal)
        completed.append(completed_actions_recommended(rows, latest_states(goal_marts)))
        missing += open_users_without_outcome(
            rows, goal_marts.labels, goal_marts.data_end, goal.window_days
        )
        context.log.info(f"{goal.name}: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))
    bad = pd.concat(completed, ignore_index=True)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="no_completed_action_recommended",
                passed=bad.empty,
                metadata={
                    "violations": len(bad),
                    "examples": bad.head(5).to_dict("records"),
                },
            ),
            dg.AssetCheckResult(
                check_name="every_open_user_has_action_or_reason",
                passed=not missing,
                metadata={"users_without_outcome": len(missing), "examples": missing[:5]},
            ),
        ],
    )
