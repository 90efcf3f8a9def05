import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ml_world import ACTIONS

from ml import pipeline
from ml.catalogue import Action, Catalogue, CatalogueError
from ml.evaluate import ConverterPoints, hit_rates
from ml.features import FeatureSpec
from ml.goals import Goal
from ml.pipeline import Marts
from ml.recommend import build_support, recommend
from ml.settings import MLSettings

CATALOGUE = Catalogue(
    actions=(Action("a", "Do A"), Action("b", "Do B"), Action("c", "Do C")),
    conversion_event="pay",
    source="test",
)


def _states(rows):
    frame = pd.DataFrame(
        rows, columns=["user_id", "n_action__a", "n_action__b", "n_action__c", "last_action"]
    )
    frame["previous_action"] = None
    frame["n_events"] = frame[["n_action__a", "n_action__b", "n_action__c"]].sum(axis=1)
    frame["step_number"] = frame["n_events"]
    return frame


def _support(min_similar=3):
    # three converters seen after doing only a (then b, b, c next); one after a and b (then c)
    converters = _states(
        [
            ("k1", 1, 0, 0, "a"),
            ("k2", 1, 0, 0, "a"),
            ("k3", 1, 0, 0, "a"),
            ("k4", 1, 1, 0, "b"),
        ]
    )
    nxt = pd.Series(["b", "b", "c", "c"])
    return build_support(converters, nxt, CATALOGUE.events, min_similar)


class _Model:
    """A made-up model: c helps most, b a little."""

    def predict(self, frame):
        c, b = frame["n_action__c"].to_numpy(), frame["n_action__b"].to_numpy()
        return 0.1 + 0.2 * c + 0.05 * b

    raw_scores = predict


_predict = _Model()


def test_support_shares_come_from_the_most_specific_group_with_enough_points():
    support = _support()
    shares, n, level = support.lookup(_states([("u", 1, 0, 0, "a"), ("v", 1, 1, 0, "b")]))
    # u matches the three a-only converters: b 2/3, c 1/3
    assert np.allclose(shares.loc[0, ["a", "b", "c"]], [0, 2 / 3, 1 / 3])
    assert n[0] == 3 and level[0] == "same actions done and same last action"
    # v has no group of 3; all four converters: c next 2 of 4 open, b 2 of 3 open
    assert np.allclose(shares.loc[1, ["b", "c"]], [2 / 3, 0.5])
    assert n[1] == 4 and level[1] == "all converters"


def test_supported_candidates_are_ranked_by_lift_and_the_reason_has_the_numbers():
    recs = recommend(_states([("u", 1, 0, 0, "a")]), _predict, CATALOGUE, _support(), 0.2, 7)
    row = recs.iloc[0]
    assert (row["status"], row["action"], row["action_label"]) == ("recommended", "c", "Do C")
    assert np.isclose(row["lift"], 0.2) and np.isclose(row["conversion_score"], 0.1)
    assert json.loads(row["alternatives"]) == [{"action": "b", "label": "Do B", "lift": 0.05}]
    assert row["reason"].startswith("33% of 3 similar users who converted did this next")
    assert "from 10.0% to 30.0%" in row["reason"]


class _Hurting:
    """A made-up model under which every action lowers the score, c least."""

    def predict(self, frame):
        c, b = frame["n_action__c"].to_numpy(), frame["n_action__b"].to_numpy()
        return 0.4 - 0.1 * c - 0.3 * b

    raw_scores = predict


def test_when_no_action_is_estimated_to_help_the_reason_says_so():
    recs = recommend(_states([("u", 1, 0, 0, "a")]), _Hurting(), CATALOGUE, _support(), 0.2, 7)
    row = recs.iloc[0]
    # c lowers 40% to 30% (lift -0.1), b to 10% (-0.3): c is the least harm
    assert (row["status"], row["action"]) == ("recommended", "c")
    assert np.isclose(row["lift"], -0.1)
    assert row["reason"] == (
        "33% of 3 similar users who converted did this next (same actions done and same last "
        "action); no supported action is estimated to raise the chance of paying within 7 "
        "days, and this one lowers it least (from 40.0% to 30.0%)"
    )


class _Indifferent:
    """A made-up model that no action moves: every score stays 25%."""

    def predict(self, frame):
        return np.full(len(frame), 0.25)

    raw_scores = predict


def test_when_no_action_changes_the_score_the_reason_does_not_say_it_lowers_it():
    recs = recommend(_states([("u", 1, 0, 0, "a")]), _Indifferent(), CATALOGUE, _support(), 0.2, 7)
    reason = recs.iloc[0]["reason"]
    assert recs.iloc[0]["lift"] == 0
    assert reason.endswith(
        "no supported action is estimated to raise the chance of paying within 7 days, and "
        "this one leaves it as it is (from 25.0% to 25.0%)"
    )


def test_an_unsupported_action_is_not_proposed_however_large_its_lift():
    recs = recommend(_states([("u", 1, 0, 0, "a")]), _predict, CATALOGUE, _support(), 0.5, 7)
    assert recs.loc[0, "action"] == "b"
    assert json.loads(recs.loc[0, "alternatives"]) == []


def test_done_actions_are_never_proposed_and_users_without_options_get_a_reason():
    states = _states([("done", 2, 1, 1, "c"), ("ab", 1, 1, 0, "b"), ("none", 1, 0, 0, "a")])
    recs = recommend(states, _predict, CATALOGUE, _support(), 0.9, 7).set_index("user_id")
    assert recs.loc["done", "status"] == "all_actions_done"
    assert recs.loc["done", "reason"] == "every action of the catalogue is already done"
    # nothing reaches 90% support: a stated reason, no action
    assert recs.loc["ab", "status"] == "no_supported_candidate"
    assert recs.loc["ab", "action"] is None and "90%" in recs.loc["ab", "reason"]
    loose = recommend(states, _predict, CATALOGUE, _support(), 0.0, 7).set_index("user_id")
    assert loose.loc["ab", "action"] == "c"
    assert loose.loc["none", "action"] in {"b", "c"}


def test_where_similar_converters_agree_only_steps_nearly_as_common_compete_on_lift():
    states = _states([("u", 1, 0, 0, "a")])
    # shares: b 2/3 (the best), c 1/3; the bar is min(2/3, focus * (2/3)^2)
    focused = recommend(states, _predict, CATALOGUE, _support(), 0.02, 7, support_focus=1.25)
    # 1.25 * 4/9 = 0.56 > 1/3: c is out, whatever its lift
    assert focused.loc[0, "action"] == "b"
    assert json.loads(focused.loc[0, "alternatives"]) == []
    # 0.5 * 4/9 = 0.22 < 1/3: c competes and its larger lift wins
    relaxed = recommend(states, _predict, CATALOGUE, _support(), 0.02, 7, support_focus=0.5)
    assert relaxed.loc[0, "action"] == "c"
    # a bar above the best share never shuts the best out
    strict = recommend(states, _predict, CATALOGUE, _support(), 0.02, 7, support_focus=100.0)
    assert strict.loc[0, "action"] == "b"


def test_a_converter_with_many_points_at_a_key_counts_once():
    # k1 lingers after doing a (five points, all followed by b); k2 and k3 each leave one
    # point there and do c next. Counted by points b would have 5/7; by converters 1/3.
    converters = _states(
        [*(("k1", 1, 0, 0, "a") for _ in range(5)), ("k2", 1, 0, 0, "a"), ("k3", 1, 0, 0, "a")]
    )
    nxt = pd.Series(["b"] * 5 + ["c", "c"])
    support = build_support(converters, nxt, CATALOGUE.events, min_similar=3)
    shares, n, level = support.lookup(_states([("u", 1, 0, 0, "a")]))
    assert np.allclose(shares.loc[0, ["a", "b", "c"]], [0, 1 / 3, 2 / 3])
    assert n[0] == 3 and level[0] == "same actions done and same last action"
    # three converters are not four, however many points they left: the lookup falls
    # through every level to all converters
    fewer = build_support(converters, nxt, CATALOGUE.events, min_similar=4)
    _, n, level = fewer.lookup(_states([("u", 1, 0, 0, "a")]))
    assert n[0] == 3 and level[0] == "all converters"


def test_without_a_cut_to_evaluate_hitrate_is_not_measured_and_the_log_says_why(caplog):
    # Two held-out converters, each seen once after doing a, b and c (every action): no point
    # of their journeys is followed by a catalogue action they had not done yet.
    done = _states([("k1", 1, 1, 1, "c"), ("k2", 2, 1, 1, "a")])
    points = ConverterPoints(done, pd.Series([None, None], dtype="object"), pd.DataFrame())
    with caplog.at_level("WARNING", logger="ml.evaluate"):
        metrics = hit_rates(points, points, _predict, CATALOGUE, _support(), 0.1, goal="g")
    assert metrics == {"hitrate_cuts": 0.0, "hitrate_converters": 0.0}
    assert (
        "goal 'g': HitRate not measured: no point of the journeys of the 2 held-out converters "
        "is followed by a catalogue action they had not done (3 actions)" in caplog.text
    )


class _ChampionWithout:
    """A champion trained before view_report existed: it scores an unknown last action high."""

    def __init__(self, actions):
        self.spec = FeatureSpec(numeric=("n_events",), action_events=tuple(actions))

    def predict(self, frame):
        unknown = ~frame["last_action"].isin(self.spec.action_events) & frame["last_action"].notna()
        return 0.1 + 0.3 * unknown.to_numpy() + 0.001 * frame["n_events"].to_numpy(dtype=float)

    raw_scores = predict

    def unwrap_python_model(self):
        return SimpleNamespace(model=self)


def test_actions_the_champion_was_not_trained_on_are_not_proposed_and_the_log_says_so(
    world, monkeypatch, caplog
):
    # The catalogue derived from the world holds all five actions; the champion knows four.
    known = [a for a in ACTIONS if a != "view_report"]
    monkeypatch.setattr(pipeline, "connect", lambda uri: None)
    monkeypatch.setattr(pipeline, "load_champion", lambda name: (_ChampionWithout(known), "3"))
    marts = Marts(world.features, world.labels, world.journeys, world.users)
    goal = Goal(name="g", window_days=7, primary=True)
    with caplog.at_level("WARNING", logger="ml.pipeline"):
        out = pipeline.next_best_actions(marts, goal, MLSettings(min_support=0.0), "unused")
    proposed = out["action"].dropna().tolist() + [
        a["action"] for alts in out["alternatives"].dropna() for a in json.loads(alts)
    ]
    assert proposed and "view_report" not in proposed
    assert (
        "goal 'g': champion version 3 was not trained on the catalogue action(s) "
        "['view_report']: they are not proposed until a model that knows them is champion"
    ) in caplog.text


def test_a_champion_that_knows_no_catalogue_action_is_an_error_naming_both(world, monkeypatch):
    monkeypatch.setattr(pipeline, "connect", lambda uri: None)
    old = _ChampionWithout(["start", "finish"])
    monkeypatch.setattr(pipeline, "load_champion", lambda name: (old, "2"))
    marts = Marts(world.features, world.labels, world.journeys, world.users)
    goal = Goal(name="g", window_days=7, primary=True)
    with pytest.raises(
        CatalogueError,
        match=r"^goal 'g': champion version 2 was trained on none of the 5 catalogue actions "
        r"\[.*\] \(it knows \['finish', 'start'\]\): train a model on the current marts$",
    ):
        pipeline.next_best_actions(marts, goal, MLSettings(), "unused")


def test_without_a_converter_of_complete_history_no_action_is_proposed_and_the_log_says_why(
    world, monkeypatch, caplog
):
    # No coverage record says any journey is complete: support has no converter to learn from.
    monkeypatch.setattr(pipeline, "connect", lambda uri: None)
    monkeypatch.setattr(pipeline, "load_champion", lambda name: (_ChampionWithout(ACTIONS), "1"))
    labels = world.labels.assign(history_complete=False)
    marts = Marts(world.features, labels, world.journeys, world.users)
    goal = Goal(name="g", window_days=7, primary=True)
    with caplog.at_level("WARNING", logger="ml.pipeline"):
        out = pipeline.next_best_actions(marts, goal, MLSettings(), "unused")
    open_rows = out.loc[~out["status"].isin(["converted", "window_closed"])]
    assert len(open_rows) > 0
    assert open_rows["status"].isin(["no_supported_candidate", "all_actions_done"]).all()
    assert open_rows["reason"].notna().all()
    converters = int(world.labels["first_payment_at"].notna().sum())
    assert (
        f"goal 'g': none of the {converters} converters has a complete history (events "
        "recorded since sign-up): no action has support, and no open user gets a "
        "recommendation"
    ) in caplog.text
