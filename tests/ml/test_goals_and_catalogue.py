import pandas as pd
import pytest

from ml.catalogue import (
    CatalogueError,
    apply_override,
    build_catalogue,
    detect_conversion_event,
    humanize,
)
from ml.goals import GoalError, load_goals, parse_goals, primary_goal, segment_mask
from ml.settings import MLSettings


def test_the_shipped_goal_file_declares_everyone_within_seven_days():
    goals = load_goals(MLSettings().goals_file)
    goal = primary_goal(goals)
    assert (goal.name, goal.window_days, goal.segment) == ("everyone-7d", 7, {})
    assert goal.model_name == "nextbest-everyone-7d"


def test_a_missing_goal_file_gives_the_default_goal(tmp_path):
    [goal] = load_goals(tmp_path / "none.yaml")
    assert goal.primary and goal.window_days == 7


def test_goals_need_exactly_one_primary():
    doc = {"goals": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(GoalError, match="exactly one goal must be primary"):
        parse_goals(doc)
    [goal] = parse_goals({"goals": [{"name": "solo", "window_days": 14}]})
    assert goal.primary and goal.window_days == 14


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "Bad Name"}, "must match"),
        ({"name": "ok", "window_days": 0}, "window_days 0"),
        ({"name": "ok", "segment": ["x"]}, "segment must be a mapping"),
    ],
)
def test_bad_goals_name_the_goal_and_the_reason(raw, message):
    with pytest.raises(GoalError, match=message):
        parse_goals({"goals": [raw]})


def test_a_segment_filters_users_case_blind_and_names_unknown_columns():
    [goal] = parse_goals({"goals": [{"name": "de", "segment": {"country": ["de", "AT"]}}]})
    users = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "country": ["DE", " de", "US", None]})
    assert segment_mask(users, goal).tolist() == [True, True, False, False]
    [other] = parse_goals({"goals": [{"name": "x", "segment": {"plan": "pro"}}]})
    with pytest.raises(GoalError, match="'plan' is not in dim_users"):
        segment_mask(users, other)


def _journeys(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "event_name", "occurred_at"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
    return frame


def _shop():
    # u1 and u2 pay at 10:05; u3 never pays. "pay" happens at payment time for both payers,
    # "cart" only for u1 before paying, "browse" for both before paying, "help" only after.
    journeys = _journeys(
        [
            ("u1", "browse", "2024-01-01 10:00"),
            ("u1", "cart", "2024-01-01 10:03"),
            ("u1", "pay", "2024-01-01 10:05"),
            ("u1", "help", "2024-01-01 11:00"),
            ("u2", "browse", "2024-01-01 10:01"),
            ("u2", "pay", "2024-01-01 10:05"),
            ("u3", "browse", "2024-01-01 10:00"),
            ("u3", "cart", "2024-01-01 10:02"),
        ]
    )
    labels = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "first_payment_at": pd.to_datetime(["2024-01-01 10:05", "2024-01-01 10:05", None]),
        }
    )
    return journeys, labels


def test_the_conversion_event_is_the_one_payers_do_at_payment_time():
    journeys, labels = _shop()
    assert detect_conversion_event(journeys, labels) == ("pay", 1.0)
    assert detect_conversion_event(journeys, labels, "pay") == ("pay", 1.0)
    with pytest.raises(CatalogueError, match="never occurs"):
        detect_conversion_event(journeys, labels, "checkout")


def test_the_catalogue_holds_events_done_before_paying_never_the_conversion_event():
    journeys, labels = _shop()
    catalogue = build_catalogue(journeys, labels, min_share=0.5)
    # browse: 2 of 2 payers before paying; cart: 1 of 2; help: only after paying
    assert catalogue.events == ["browse", "cart"]
    assert [a.converter_share for a in catalogue.actions] == [1.0, 0.5]
    assert catalogue.conversion_event == "pay"
    assert build_catalogue(journeys, labels, min_share=0.75).events == ["browse"]


def test_a_yaml_override_relabels_excludes_and_refuses_the_conversion_event(tmp_path):
    journeys, labels = _shop()
    catalogue = build_catalogue(journeys, labels, min_share=0.5)
    override = tmp_path / "catalogue.yaml"
    override.write_text("labels:\n  cart: Add to cart\nexclude: [browse]\n")
    changed = apply_override(catalogue, override)
    assert [(a.event, a.label) for a in changed.actions] == [("cart", "Add to cart")]
    override.write_text("actions:\n  - event: pay\n")
    with pytest.raises(CatalogueError, match="conversion event"):
        apply_override(catalogue, override)


def test_labels_read_like_words():
    assert humanize("delivery_choice") == "Delivery choice"
    assert humanize("inviteTeammate") == "Invite teammate"
