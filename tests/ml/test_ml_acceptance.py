"""Acceptance on sandbox data: dataset -> raw layer -> dbt marts -> model, registry, recommender.

The synthetic targets (planted best action for 90% of open users, ROC-AUC within 0.02 of the
true probabilities') need tens of thousands of users to be within reach; the benchmark
`ml_synthetic` measures them at 100,000. Here, at 3,000 users, the test holds the pipeline to
what that size allows and checks the direction of every comparison.
"""

from pathlib import Path

import duckdb
import pytest
from mlflow.tracking import MlflowClient

from bench.benchmarks._ml_warehouse import build_warehouse
from ml.goals import default_goals
from ml.pipeline import latest_states, next_best_actions, read_marts, train_and_register
from ml.settings import MLSettings
from ml.truth import auc_gap, planted_agreement
from orchestration.settings import get_settings

pytestmark = pytest.mark.slow


def _train(warehouse: Path, tmp_path: Path):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        marts = read_marts(con)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    goal = default_goals()[0]
    run = train_and_register(marts, goal, MLSettings(), uri, tmp_path / "artifacts")
    return marts, goal, run, uri


@pytest.fixture(scope="module")
def simple_shop_run(tmp_path_factory):
    cache = get_settings().cache_dir  # the download is cached in the checkout's home
    folder = tmp_path_factory.mktemp("simple_shop")
    warehouse = folder / "warehouse.duckdb"
    build_warehouse(warehouse, "simple_shop", cache_dir=cache, every_event=True)
    return _train(warehouse, folder)


def test_on_simple_shop_the_recommender_beats_both_baselines_in_the_logged_run(simple_shop_run):
    _, goal, run, uri = simple_shop_run
    m, e = run.result.metrics, run.evaluation
    assert run.catalogue.conversion_event == "payment_done"
    assert "payment_done" not in run.catalogue.events
    # every cut of every held-out converter's journey, not one lucky draw
    assert e["hitrate_cuts"] > 5 * e["hitrate_converters"] > 0
    assert e["hitrate_at_1_recommender"] > e["hitrate_at_1_markov"]
    assert e["hitrate_at_1_recommender"] > e["hitrate_at_1_popular_at_step"]
    assert m["model_test_roc_auc"] > m["base_rate_test_roc_auc"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(goal.model_name, "champion")
    logged = client.get_run(champion.run_id).data.metrics
    for name in ("recommender", "markov", "popular_at_step"):
        assert logged[f"hitrate_at_1_{name}"] == pytest.approx(e[f"hitrate_at_1_{name}"])
    for name in ("model", "logreg", "base_rate"):
        assert logged[f"{name}_test_roc_auc"] == pytest.approx(m[f"{name}_test_roc_auc"])


@pytest.mark.xfail(
    strict=False,
    reason="not met yet: on simple_shop the logistic regression's test ROC-AUC (0.824) is above "
    "the model's (0.815); none of the tree settings, constraints, weightings, added features, "
    "stacking on its log-odds, blends or seed averaging in docs/models.md brought the trees "
    "above it",
)
def test_on_simple_shop_the_model_beats_the_logistic_regression(simple_shop_run):
    _, _, run, _ = simple_shop_run
    m = run.result.metrics
    assert m["model_test_roc_auc"] > m["logreg_test_roc_auc"]


def test_on_synthetic_data_the_model_approaches_the_planted_truth(tmp_path):
    from sandbox.synthetic import SyntheticTruth

    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse, "synthetic", users=3000, seed=1, dirt=False, cache_dir=tmp_path)
    marts, goal, run, uri = _train(warehouse, tmp_path)
    truth = SyntheticTruth()
    gap = auc_gap(run.result.splits["test"], run.result.test_scores["model"], truth)
    assert gap["synthetic_true_probability_test_roc_auc"] > gap["synthetic_model_test_roc_auc"]
    assert gap["synthetic_roc_auc_gap"] < 0.05
    nba = next_best_actions(marts, goal, MLSettings(), uri)
    open_rows = nba.loc[nba["status"] != "converted"].loc[lambda f: f["status"] != "window_closed"]
    states = latest_states(marts).set_index("user_id").loc[open_rows["user_id"]].reset_index()
    agreement = planted_agreement(open_rows.reset_index(drop=True), states, truth)
    # a random pick among ~15 undone actions would agree about 7% of the time
    assert agreement["synthetic_planted_best_agreement"] > 0.5
