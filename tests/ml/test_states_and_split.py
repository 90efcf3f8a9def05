import pandas as pd
import pytest

from ml.features import FeatureSpec, spec_for, with_action_done
from ml.goals import Goal
from ml.states import event_states, first_steps, next_new_action
from ml.train import TrainingError, label_snapshots, time_split, train_goal


def _journey():
    # one user: a, b, a (new session), c, pay
    t0 = pd.Timestamp("2024-03-01 09:00")
    offsets = [0, 60, 90_000, 90_060, 90_120]
    return pd.DataFrame(
        {
            "user_id": "u",
            "event_name": ["a", "b", "a", "c", "pay"],
            "occurred_at": [t0 + pd.Timedelta(seconds=s) for s in offsets],
            "session_number": [1, 1, 2, 2, 2],
            "step_number": [1, 2, 3, 4, 5],
            "seconds_since_signup": offsets,
            "days_since_signup": [s // 86400 for s in offsets],
        }
    )


def test_event_states_count_what_was_done_up_to_each_event():
    states = event_states(_journey(), ["a", "b", "c"])
    assert states["n_action__a"].tolist() == [1, 1, 2, 2, 2]
    assert states["n_action__b"].tolist() == [0, 1, 1, 1, 1]
    assert states["n_action__c"].tolist() == [0, 0, 0, 1, 1]
    assert states["n_active_days"].tolist() == [1, 1, 2, 2, 2]
    assert states["previous_action"].tolist()[1:] == ["a", "b", "a", "c"]
    assert pd.isna(states["previous_action"].iloc[0])


def test_the_next_new_action_skips_repeats_and_stops_at_conversion():
    journey = _journey()
    states = event_states(journey, ["a", "b", "c"])
    firsts = first_steps(journey, ["a", "b", "c"])
    # after a -> b (new); after b -> a is a repeat, c is next new; after c -> nothing new
    assert next_new_action(states, firsts).tolist()[:4] == ["b", "c", "c", None]
    # if the user converted at step 4, c no longer counts as a next action from step 2
    stopped = next_new_action(states, firsts, pd.Series({"u": 4}))
    assert stopped.tolist()[:3] == ["b", None, None]


def test_doing_an_action_changes_only_what_it_should():
    states = event_states(_journey(), ["a", "b", "c"]).iloc[[1]]
    after = with_action_done(states, "c").iloc[0]
    assert after["n_action__c"] == 1 and after["n_action__a"] == 1
    assert (after["last_action"], after["previous_action"]) == ("c", "b")
    assert after["step_number"] == 3 and after["seconds_since_signup"] == 60


def test_the_conversion_count_is_never_a_feature():
    states = event_states(_journey(), ["a", "b", "c", "pay"])
    spec = spec_for(states, ["a", "b", "c"], excluded=["pay"])
    assert "n_action__pay" not in spec.names
    assert {"n_action__a", "n_action__b", "n_action__c"} <= set(spec.names)


def _frame(world):
    goal = Goal(name="g", window_days=7, primary=True)
    return label_snapshots(
        world.features, world.labels, goal, world.journeys["occurred_at"].max(), "payment_done"
    )


def test_labels_say_whether_payment_follows_the_snapshot_within_the_window(world):
    frame = _frame(world)
    # recompute by another route: per user, paid within 7 days and after this snapshot
    signup = world.labels.set_index("user_id")["signed_up_at"]
    paid = world.labels.set_index("user_id")["first_payment_at"]
    for row in frame.sample(300, random_state=1).itertuples():
        p = paid[row.user_id]
        expected = pd.notna(p) and p <= signup[row.user_id] + pd.Timedelta(days=7)
        assert row.y == int(expected)
        if row.trainable:
            assert pd.isna(p) or row.snapshot_at < p


def test_the_time_split_puts_every_user_in_one_split_and_later_users_later(world):
    frame = _frame(world)
    rows = frame.loc[frame["trainable"]].copy()
    rows["split"] = time_split(rows, 0.2, 0.2)
    kept = rows.loc[rows["split"].notna()]
    assert kept.groupby("user_id")["split"].nunique().max() == 1
    signup = kept.groupby("split")["signed_up_at"].agg(["min", "max"])
    assert signup.loc["train", "max"] <= signup.loc["valid", "min"]
    assert signup.loc["valid", "max"] <= signup.loc["test", "min"]
    # no training row sees anything from after the first validation sign-up (likewise
    # validation against test), and the drop happened: rows existed there before the split
    for early, late in (("train", "valid"), ("valid", "test")):
        part = kept.loc[kept["split"] == early]
        assert part["snapshot_at"].max() < signup.loc[late, "min"]
        raw = rows.loc[rows["user_id"].isin(part["user_id"])]
        assert raw["snapshot_at"].max() >= signup.loc[late, "min"]
    users = kept.drop_duplicates("user_id")["split"].value_counts(normalize=True)
    # the embargo drops rows, not users from other splits: shares stay near 60/20/20
    assert 0.5 < users["train"] < 0.65 and 0.15 < users["test"] < 0.3


def test_a_split_emptied_by_sign_ups_at_one_time_says_the_embargo_dropped_its_rows():
    # Ten contacts imported at once share one sign-up time; each has two snapshots after it,
    # the even ones pay. 20%/20% of 10 users: train u0-u5, valid u6-u7, test u8-u9. The valid
    # split's first sign-up is that same time, so all 12 training rows (6 users x 2) reach it.
    t = pd.Timestamp("2024-01-01")
    frame = pd.DataFrame(
        [
            (f"u{u}", f"s{u}-{k}", t, t + pd.Timedelta(hours=k), int(u % 2 == 0))
            for u in range(10)
            for k in (1, 2)
        ],
        columns=["user_id", "snapshot_id", "signed_up_at", "snapshot_at", "y"],
    )
    frame["trainable"] = True
    spec = FeatureSpec(numeric=("n_events",), action_events=("a",))
    with pytest.raises(
        TrainingError,
        match=r"^goal 'bulk': the train split has 0 rows and 0 positives; both classes are "
        r"needed: 12 of its 12 rows were dropped as their snapshots are at or after the valid "
        r"split's first sign-up \(2024-01-01 00:00:00\), when 6 of its 6 users signed up too$",
    ):
        train_goal(frame, spec, Goal(name="bulk"))
