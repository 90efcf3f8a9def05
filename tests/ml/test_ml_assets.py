import json

import dagster as dg
import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml.features import action_column
from orchestration.models import defs
from orchestration.models.assets import hitrate_metadata


@pytest.mark.slow
def test_the_model_assets_train_register_score_and_recommend(
    world, warehouse, nextbest_home, monkeypatch
):
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("NEXTBEST_AUC_FLOOR", "0.55")
    assets = defs().assets
    result = dg.materialize(assets, raise_on_error=True)
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "test_roc_auc_above_floor": True,
        "no_completed_action_recommended": True,
        "every_open_user_has_action_or_reason": True,
    }
    model_meta = result.asset_materializations_for_node("conversion_model")[0].metadata
    assert model_meta["everyone-7d/alias"].value == "champion"
    run_id = model_meta["everyone-7d/mlflow_run_id"].value

    uri = f"sqlite:///{nextbest_home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("nextbest-everyone-7d", "champion")
    assert champion.run_id == run_id
    metrics = client.get_run(run_id).data.metrics
    for name in (
        "model_test_roc_auc",
        "logreg_test_roc_auc",
        "base_rate_test_roc_auc",
        "model_test_ece",
        "hitrate_at_1_recommender",
        "hitrate_at_1_markov",
        "hitrate_at_1_popular_at_step",
    ):
        assert name in metrics
    # the planted rule is learnable: the model ranks far better than chance
    assert metrics["model_test_roc_auc"] > 0.6

    with duckdb.connect(str(warehouse), read_only=True) as con:
        nba = con.execute("select * from ml.next_best_actions").df()
        scores = con.execute("select * from ml.user_scores").df()
        split = con.execute("select * from ml.training_set").df()
    labels = world.labels
    assert len(nba) == len(world.users) == nba["user_id"].nunique()
    assert len(scores) == world.features["user_id"].nunique()
    assert scores["model_version"].astype(str).eq(str(champion.version)).all()
    assert split.groupby("user_id")["split"].nunique().max() == 1

    # converted users get no action; open, unconverted users get one or a reason
    paid = set(labels.loc[labels["first_payment_at"].notna(), "user_id"])
    by_user = nba.set_index("user_id")
    assert (by_user.loc[sorted(paid), "status"] == "converted").all()
    assert by_user.loc[sorted(paid), "action"].isna().all()
    end = world.journeys["occurred_at"].max()
    open_users = labels.loc[
        labels["first_payment_at"].isna() & (labels["signed_up_at"] + pd.Timedelta(days=7) > end),
        "user_id",
    ]
    assert len(open_users) > 20
    open_rows = by_user.loc[sorted(open_users)]
    open_statuses = ["recommended", "no_supported_candidate", "all_actions_done"]
    assert open_rows["status"].isin(open_statuses).all()
    assert (open_rows["action"].notna() | open_rows["reason"].notna()).all()

    # no recommended action, first choice or alternative, was already done at the latest state
    latest = world.features.sort_values("snapshot_at").drop_duplicates("user_id", keep="last")
    latest = latest.set_index("user_id")
    for user, row in open_rows.loc[open_rows["status"] == "recommended"].iterrows():
        proposed = [row["action"]] + [a["action"] for a in json.loads(row["alternatives"])]
        for action in proposed:
            assert latest.at[user, action_column(action)] == 0, (user, action)
        assert "similar users who converted did this next" in row["reason"]


def test_hitrates_not_measured_are_left_out_of_the_metadata_not_shown_as_nan():
    # No cut to evaluate: only the count of cuts, 0, is shown.
    assert hitrate_metadata("g", {"hitrate_cuts": 0.0, "hitrate_converters": 0.0}) == {
        "g/hitrate_cuts": 0
    }
    measured = {
        "hitrate_cuts": 12.0,
        "hitrate_at_1_recommender": 0.51234,
        "hitrate_at_1_markov": 0.4,
    }
    assert hitrate_metadata("g", measured) == {
        "g/hitrate_cuts": 12,
        "g/hitrate_at_1_recommender": 0.5123,
        "g/hitrate_at_1_markov": 0.4,
    }
