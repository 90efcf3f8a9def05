import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ml.catalogue import build_catalogue
from ml.features import spec_for
from ml.goals import Goal
from ml.registry import connect, decide_promotion, load_champion, log_and_register
from ml.train import label_snapshots, time_split, train_goal


def test_the_promotion_rule_in_numbers():
    assert decide_promotion(0.70, None, 0.01)[0] is True
    assert decide_promotion(0.70, 0.69, 0.01)[0] is True  # exactly the margin
    assert decide_promotion(0.705, 0.70, 0.01)[0] is False  # better, but not by the margin
    assert decide_promotion(0.60, 0.70, 0.0)[0] is False
    promoted, why = decide_promotion(0.60, 0.70, 0.01)
    assert "0.6000" in why and "0.7000" in why and not promoted


@pytest.mark.slow
def test_a_worse_challenger_does_not_take_over_and_a_better_one_does(world, tmp_path):
    goal = Goal(name="promo", window_days=7, primary=True)
    catalogue = build_catalogue(world.journeys, world.labels)
    frame = label_snapshots(
        world.features, world.labels, goal, world.journeys["occurred_at"].max(), "payment_done"
    )
    frame = frame.loc[frame["trainable"]].copy()
    frame["split"] = time_split(frame, 0.2, 0.2)
    spec = spec_for(world.features, catalogue.events, ["payment_done"])
    good = train_goal(frame, spec, goal, seed=1)
    # the same rows with training and validation labels shuffled: it learns nothing
    noisy = frame.copy()
    fit_rows = noisy["split"].isin(["train", "valid"])
    rng = np.random.default_rng(3)
    noisy.loc[fit_rows, "y"] = rng.permutation(noisy.loc[fit_rows, "y"].to_numpy())
    bad = train_goal(noisy, spec, goal, seed=1)
    assert good.metrics["model_test_roc_auc"] > bad.metrics["model_test_roc_auc"] + 0.05
    # both are judged on identical test rows
    assert good.splits["test"]["snapshot_id"].tolist() == bad.splits["test"]["snapshot_id"].tolist()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = connect(uri)
    artifacts = tmp_path / "artifacts"
    first = log_and_register(bad, goal, catalogue, client, artifacts, margin=0.01)
    assert first.promoted and first.champion_roc_auc is None
    second = log_and_register(good, goal, catalogue, client, artifacts, margin=0.01)
    assert second.promoted
    # the champion's score was measured again, from the registry, on the same test rows
    assert second.champion_roc_auc == pytest.approx(bad.metrics["model_test_roc_auc"])
    third = log_and_register(bad, goal, catalogue, client, artifacts, margin=0.01)
    assert not third.promoted and third.champion_version == second.version
    assert third.champion_roc_auc == pytest.approx(good.metrics["model_test_roc_auc"])

    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(registry.get_model_version_by_alias(goal.model_name, "champion").version) == "2"
    assert str(registry.get_model_version_by_alias(goal.model_name, "challenger").version) == "3"
    run = registry.get_run(third.run_id)
    assert run.data.metrics["promotion_promoted"] == 0.0
    assert run.data.metrics["promotion_champion_test_roc_auc"] == pytest.approx(
        good.metrics["model_test_roc_auc"]
    )
    assert "does not beat champion" in run.data.tags["promotion_decision"]
    artifacts_logged = {a.path for a in registry.list_artifacts(third.run_id, "plots")}
    assert artifacts_logged == {
        "plots/calibration_curve.png",
        "plots/precision_recall_curve.png",
        "plots/feature_importance.png",
    }
    assert run.inputs.dataset_inputs and all(d.dataset.digest for d in run.inputs.dataset_inputs)
    # the artifacts live under the folder given for them, not in the working directory
    assert (artifacts / "promo").is_dir()

    champion, version = load_champion(goal.model_name)
    assert version == "2"
    test = good.splits["test"]
    scores = champion.unwrap_python_model().model.predict(test)
    assert np.allclose(scores, good.test_scores["model"])
