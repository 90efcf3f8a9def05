"""Bad goal files, catalogue overrides and settings are refused before any work, by name."""

import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from ml.catalogue import CatalogueError, apply_override, build_catalogue, derived_label
from ml.goals import Goal, GoalError, check_marts_window, load_goals, parse_goals
from ml.pipeline import Marts, training_set
from ml.settings import MLSettings
from ml.train import TrainingError
from orchestration.settings import Settings
from orchestration.transform.settings import TransformSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_goals_and_catalogue import _shop


def _goals_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "goals.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML forbids tabs for indentation: line 2, column 1 holds one.
        ("goals:\n\t- name: a\n", r"goals.yaml: line 2, column 1: not valid YAML"),
        ("goals: [\n", r"goals.yaml: line 2, column 1: not valid YAML"),
        # 0xE9 is Latin-1 for "é", at offset 39 of this text (7 + 12 + 20): not a UTF-8 sequence.
        (
            b"goals:\n  - name: a\n    description: caf\xe9\n",
            r"not UTF-8 text \(byte 0xe9 at offset 39\)",
        ),
        # PyYAML keeps the last of two equal keys; here the goal would silently be "b".
        (
            "goals:\n  - name: a\n    name: b\n",
            r"line 3, .*key 'name' appears twice \(first on line 2\)",
        ),
    ],
)
def test_an_unreadable_goal_file_names_the_file_and_the_line(tmp_path, text, message):
    with pytest.raises(GoalError, match=message):
        load_goals(_goals_file(tmp_path, text))


def test_a_goal_file_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(GoalError, match="not a file"):
        load_goals(tmp_path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # A misspelt key would otherwise leave the window at its default of 7.
        ({"name": "a", "windw_days": 30}, r"goal 'a': unknown keys \['windw_days'\]"),
        # bool("false") is True: the quoted value made the goal primary.
        ({"name": "a", "primary": "false"}, r"goal 'a': primary 'false' is not true or false"),
        ({"name": "a", "segment": {"country": []}}, r"segment column 'country' lists no values"),
        ({"name": "a", "segment": {"country": None}}, r"'country': value None is not a text"),
        ({"name": "a", "segment": {"country": [{"x": 1}]}}, r"value \{'x': 1\} is not a text"),
    ],
)
def test_a_goal_with_an_unusable_entry_names_the_goal_and_the_entry(raw, message):
    with pytest.raises(GoalError, match=message):
        parse_goals({"goals": [raw]})


def test_a_goal_file_with_an_unknown_top_level_key_is_refused():
    with pytest.raises(GoalError, match=r"unknown top-level keys \['goal'\]"):
        parse_goals({"goals": [{"name": "a"}], "goal": [{"name": "b"}]})


def test_a_quoted_false_primary_no_longer_picks_the_primary_goal():
    # Two goals, the second one the primary; a quoted "false" on the first used to win.
    doc = {"goals": [{"name": "a", "primary": False}, {"name": "b", "primary": True}]}
    assert [g.primary for g in parse_goals(doc)] == [False, True]


def test_a_goal_window_longer_than_the_marts_window_is_refused():
    goals = [Goal("short", 7, primary=True), Goal("long", 30)]
    check_marts_window(goals, 30)
    with pytest.raises(GoalError, match=r"CONVERSION_WINDOW_DAYS \(7\).*: long \(30\)"):
        check_marts_window(goals, 7)


def _marts() -> Marts:
    journeys, labels = _shop()
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "country": ["DE", "DE", "US"]})
    features = pd.DataFrame({"user_id": ["u1", "u2", "u3"]})
    return Marts(features=features, labels=labels, journeys=journeys, users=users)


def test_a_segment_that_selects_nobody_names_the_goal_and_the_count():
    [goal] = parse_goals({"goals": [{"name": "fr", "segment": {"country": "FR"}}]})
    with pytest.raises(GoalError, match=r"goal 'fr': segment .* matches none of the 3 users"):
        _marts().for_goal(goal)


def test_a_segment_without_converters_names_the_goal():
    # u3, the only US user, never pays: the catalogue cannot be derived for this segment.
    [goal] = parse_goals({"goals": [{"name": "us", "segment": {"country": "US"}}]})
    with pytest.raises(CatalogueError, match=r"goal 'us': no converters"):
        training_set(_marts(), goal, MLSettings())


def _override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("actions:\n  - {event: checkout}\n", r"action #1: event 'checkout' never occurs"),
        ("labels:\n  crat: Add to cart\n", r"labels: event 'crat' never occurs"),
        ("exclude: [brows]\n", r"exclude: event 'brows' never occurs"),
        ("actions:\n  - {event: cart}\n  - {event: cart}\n", r"action #2: event 'cart' is listed"),
        ("actions:\n  - {event: cart, label: ''}\n", r"action #1: label is empty"),
        ("labels:\n  cart: '  '\n", r"labels: 'cart': label is empty"),
        ("labels:\n  cart: null\n", r"labels: 'cart': label None is not text"),
        ('labels:\n  cart: "Add\\nto cart"\n', r"'cart': label 'Add\\nto cart' holds a line break"),
        (f"labels:\n  cart: {'x' * 256}\n", r"label of 256 characters is over Intercom's 255"),
        # A string is iterable: "cart" used to exclude the events "c", "a", "r" and "t".
        ("exclude: cart\n", r"'exclude' must be a list, got str"),
        ("labels: [cart]\n", r"'labels' must be a mapping, got list"),
        ("label:\n  cart: Add to cart\n", r"unknown keys \['label'\]"),
        ("actions:\n  - {event: cart, lable: Add}\n", r"action #1: unknown keys \['lable'\]"),
        ("labels:\n\tcart: x\n", r"catalogue.yaml: line 2, column 1: not valid YAML"),
    ],
)
def test_a_bad_catalogue_override_names_the_file_the_entry_and_the_reason(tmp_path, text, message):
    journeys, labels = _shop()
    with pytest.raises(CatalogueError, match=message):
        build_catalogue(journeys, labels, min_share=0.5, override=_override(tmp_path, text))


def test_override_labels_are_trimmed_and_a_255_character_label_is_kept(tmp_path):
    journeys, labels = _shop()
    catalogue = build_catalogue(journeys, labels, min_share=0.5)
    longest = "x" * 255
    path = _override(tmp_path, f"labels:\n  cart: ' Add to cart '\n  browse: {longest}\n")
    changed = apply_override(catalogue, path, {"browse", "cart", "pay"})
    assert [(a.event, a.label) for a in changed.actions] == [
        ("browse", longest),
        ("cart", "Add to cart"),
    ]


def test_a_set_catalogue_file_that_is_missing_is_refused_not_skipped(tmp_path):
    journeys, labels = _shop()
    with pytest.raises(CatalogueError, match="no such file"):
        build_catalogue(journeys, labels, min_share=0.5, override=tmp_path / "missing.yaml")


@pytest.mark.parametrize("variable", ["NEXTBEST_GOALS_FILE", "NEXTBEST_CATALOGUE_FILE"])
def test_a_set_config_file_that_is_missing_names_the_variable(monkeypatch, tmp_path, variable):
    monkeypatch.setenv(variable, str(tmp_path / "missing.yaml"))
    with pytest.raises(ValidationError, match=f"{variable}\n.*no file .*missing.yaml"):
        MLSettings()


def test_empty_model_variables_mean_unset(monkeypatch):
    for variable in ("NEXTBEST_GOALS_FILE", "NEXTBEST_CATALOGUE_FILE", "NEXTBEST_CONVERSION_EVENT"):
        monkeypatch.setenv(variable, "")
    settings = MLSettings()
    assert settings.catalogue_file is None and settings.conversion_event is None
    assert settings.goals_file.name == "goals.yaml"


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        # A margin of 1 or more can never be gained on ROC-AUC (at most 1): no promotion ever.
        (MLSettings, "NEXTBEST_PROMOTION_MARGIN", "inf"),
        (MLSettings, "NEXTBEST_PROMOTION_MARGIN", "1"),
        (MLSettings, "NEXTBEST_PROMOTION_MARGIN", "nan"),
        # dbt writes one select per day of the window, as many as the value says.
        (Settings, "NEXTBEST_CONVERSION_WINDOW_DAYS", "366"),
        (Settings, "NEXTBEST_SESSION_GAP_MINUTES", "525601"),
        # 1.7e12 is a 2023 time in milliseconds, year 55,000 or so as seconds.
        (TransformSettings, "NEXTBEST_AS_OF", "1700000000000"),
    ],
)
def test_out_of_range_settings_name_the_variable(monkeypatch, cls, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable):
        cls()


@pytest.mark.parametrize(
    ("cls", "variable", "value", "field", "expected"),
    [
        (MLSettings, "NEXTBEST_PROMOTION_MARGIN", "0.999", "promotion_margin", 0.999),
        (Settings, "NEXTBEST_CONVERSION_WINDOW_DAYS", "365", "conversion_window_days", 365),
        (Settings, "NEXTBEST_SESSION_GAP_MINUTES", "525600", "session_gap_minutes", 525_600),
        (TransformSettings, "NEXTBEST_AS_OF", "99999999999", "as_of", 99_999_999_999),
    ],
)
def test_the_largest_accepted_settings_are_kept(monkeypatch, cls, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(cls(), field) == expected


def test_the_model_assets_refuse_a_goal_longer_than_the_marts_window(monkeypatch, tmp_path):
    from orchestration.models.assets import _context

    path = _goals_file(tmp_path, "goals:\n  - name: month\n    window_days: 30\n")
    monkeypatch.setenv("NEXTBEST_GOALS_FILE", str(path))
    monkeypatch.setenv("NEXTBEST_CONVERSION_WINDOW_DAYS", "14")
    with pytest.raises(GoalError, match=r"\(14\).*: month \(30\)"):
        _context()
    monkeypatch.setenv("NEXTBEST_CONVERSION_WINDOW_DAYS", "30")
    assert [goal.window_days for goal in _context()[2]] == [30]


def test_a_goal_longer_than_the_window_the_marts_were_built_with_is_refused():
    marts = _marts()
    signed_up = pd.to_datetime(["2024-01-01 09:00"] * 3)
    # The marts' labels state a 7-day window: sign-up to sign-up plus 7 x 86,400 seconds.
    marts.labels = marts.labels.assign(
        signed_up_at=signed_up, window_ends_at=signed_up + pd.Timedelta(seconds=7 * 86_400)
    )
    assert marts.window_days == 7
    assert marts.for_goal(Goal("week", 7, primary=True)) is marts
    with pytest.raises(GoalError, match=r"goal 'month': window_days 30 is longer than the 7 days"):
        marts.for_goal(Goal("month", 30, primary=True))


@pytest.mark.parametrize(
    ("description", "shown"),
    [(["Everyone", "in Germany"], r"\['Everyone', 'in Germany'\]"), (7, "7"), (True, "True")],
)
def test_a_goal_description_that_is_not_text_is_refused_naming_the_goal(description, shown):
    raw = {"name": "de", "description": description}
    with pytest.raises(GoalError, match=rf"goal 'de': description {shown} is not text"):
        parse_goals({"goals": [raw]})
    # Text, or no description at all, is kept as given.
    [goal] = parse_goals({"goals": [{"name": "de", "description": "People in Germany"}]})
    assert goal.description == "People in Germany"
    assert parse_goals({"goals": [{"name": "de", "description": None}]})[0].description == ""


def _censored_marts(data_end: str | None) -> Marts:
    """_marts() with sign-ups at 09:00 on 2024-01-01, a snapshot per user, complete histories."""
    marts = _marts()
    signed_up = pd.to_datetime(["2024-01-01 09:00"] * 3)
    marts.labels = marts.labels.assign(signed_up_at=signed_up, history_complete=True)
    if data_end is not None:
        # dbt states the data's end (as_of) on every row and drops payments after it.
        marts.labels["data_end_at"] = pd.Timestamp(data_end)
        marts.labels["first_payment_at"] = marts.labels["first_payment_at"].where(
            marts.labels["first_payment_at"] <= pd.Timestamp(data_end)
        )
    marts.features = marts.features.assign(
        snapshot_id=["s1", "s2", "s3"], snapshot_at=pd.to_datetime(["2024-01-01 10:00"] * 3)
    )
    return marts


def test_an_as_of_that_censors_every_user_is_named_with_the_numbers():
    # as_of 2024-01-01 10:30 (1704105000 = 19723 days x 86,400 + 10.5 h): both payments at
    # 10:05 are seen, the catalogue holds, but every 7-day window (to 2024-01-08 09:00) is open.
    [goal] = parse_goals(None)
    with pytest.raises(
        TrainingError,
        match=r"goal 'everyone-7d': no snapshot can train: 3 of 3 users still have their 7-day "
        r"window open at the data's end 2024-01-01 10:30:00 \(censored\), 0 have an incomplete "
        r"history; the labels end at as_of 1704105000 \(2024-01-01 10:30:00; NEXTBEST_AS_OF.*\), "
        r"the earliest sign-up is 2024-01-01 09:00:00, whose 7-day window closes at "
        r"2024-01-08 09:00:00, and the events run to 2024-01-01 11:00:00",
    ):
        training_set(_censored_marts("2024-01-01 10:30"), goal, MLSettings())


def test_an_as_of_before_the_data_starts_is_named_not_only_no_converters():
    # as_of 2023-12-01 00:00 (1701388800): before every sign-up and payment.
    [goal] = parse_goals(None)
    with pytest.raises(
        CatalogueError,
        match=r"goal 'everyone-7d': no converters in the data.*as_of 1701388800 "
        r"\(2023-12-01 00:00:00;.*earliest sign-up is 2024-01-01 09:00:00",
    ):
        training_set(_censored_marts("2023-12-01"), goal, MLSettings())


def test_without_as_of_an_all_censored_goal_says_so_without_naming_as_of():
    # The data's end is the latest event (11:00); the one-day log leaves every window open.
    [goal] = parse_goals(None)
    with pytest.raises(TrainingError, match=r"3 of 3 users .* 11:00:00 \(censored\)") as caught:
        training_set(_censored_marts(None), goal, MLSettings())
    assert "as_of" not in str(caught.value)


def _week_is_refused(match: str) -> None:
    """The training set of goal 'week' over _censored_marts(), its data ending 2024-02-01 (every
    7-day window closed), is refused with a TrainingError matching `match`."""
    marts = _censored_marts(None)
    marts.labels["data_end_at"] = pd.Timestamp("2024-02-01")
    [goal] = parse_goals({"goals": [{"name": "week"}]})
    with pytest.raises(TrainingError, match=match):
        training_set(marts, goal, MLSettings())


def test_users_too_few_to_split_name_the_goal_and_the_counts(monkeypatch):
    # 3 users at 10% and 10%: round(0.3) = 0 validate and 0 test, 3 train.
    monkeypatch.setenv("NEXTBEST_VALID_FRACTION", "0.1")
    monkeypatch.setenv("NEXTBEST_TEST_FRACTION", "0.1")
    _week_is_refused(
        r"goal 'week': 3 users cannot be split into train, valid and test: valid 10% and "
        r"test 10% of them give train/valid/test 3/0/0"
    )


def _shop_with(events: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """_shop() where both payers also did each of `events` at 10:04, before paying at 10:05."""
    journeys, labels = _shop()
    extra = pd.DataFrame(
        [
            (user, event, pd.Timestamp("2024-01-01 10:04"))
            for user in ("u1", "u2")
            for event in events
        ],
        columns=["user_id", "event_name", "occurred_at"],
    )
    return pd.concat([journeys, extra], ignore_index=True), labels


def test_events_whose_names_cannot_reach_intercom_are_left_out_and_counted(caplog):
    # 256 characters is one over Intercom's 255 for nb_next_action; the others hold a line
    # break, a tab, or a right-to-left override (U+202E, a format character).
    bad = ["x" * 256, "step\none", "step\tone", "pay\u202edone"]
    journeys, labels = _shop_with([*bad, "x" * 255])
    with caplog.at_level("WARNING", logger="ml.catalogue"):
        catalogue = build_catalogue(journeys, labels, min_share=0.5)
    assert catalogue.events == ["browse", "x" * 255, "cart"]
    # browse, cart and the five added: 7 events done before paying (help comes after, and
    # pay, the conversion event, at payment time).
    assert "catalogue: 4 of 7 events left out" in caplog.text
    assert "the name of 256 characters is over Intercom's 255" in caplog.text
    assert caplog.text.count("the name holds a line break or control character") == 3


def test_a_derived_label_is_made_writable_and_the_change_is_logged(caplog):
    # "aB" x 120 is 240 characters, a valid name; as a label each "aB" becomes "a b": 360
    # characters, cut to 254 ("a b" x 84 + "a ") and trimmed, then the ellipsis.
    event = "aB" * 120
    journeys, labels = _shop_with([event])
    with caplog.at_level("WARNING", logger="ml.catalogue"):
        catalogue = build_catalogue(journeys, labels, min_share=0.5)
    label = catalogue.label(event)
    assert label == "A b" + "a b" * 83 + "a\u2026"
    assert len(label) == 254
    assert "catalogue: 1 of 3 labels made from event names were changed" in caplog.text


@pytest.mark.parametrize(
    ("event", "label"),
    [
        ("step\r\n\x00one", "Step one"),
        ("  \u2028plan_picked\u2029 ", "Plan picked"),
        ("x" * 300, "X" + "x" * 253 + "\u2026"),
        ("delivery_choice", "Delivery choice"),
    ],
)
def test_derived_labels_are_one_trimmed_line_of_at_most_255_characters(event, label):
    assert derived_label(event) == label
    assert len(derived_label(event)) <= 255


def test_an_override_action_whose_name_cannot_reach_intercom_is_refused(tmp_path):
    journeys, labels = _shop_with(["x" * 256])
    path = _override(tmp_path, f"actions:\n  - {{event: {'x' * 256}}}\n")
    with pytest.raises(
        CatalogueError,
        match=r"action #1: event 'x+' cannot be an action: the "
        r"name of 256 characters is over Intercom's 255",
    ):
        build_catalogue(journeys, labels, min_share=0.5, override=path)
    # Without a label, an override action gets the same writable derived label.
    journeys, labels = _shop_with(["aB" * 120])
    path = _override(tmp_path, f"actions:\n  - {{event: {'aB' * 120}}}\n")
    catalogue = build_catalogue(journeys, labels, min_share=0.5, override=path)
    assert catalogue.actions[0].label == "A b" + "a b" * 83 + "a\u2026"


def test_a_training_set_whose_train_split_the_embargo_empties_is_refused_with_the_reason():
    # Three users signed up at 09:00, one snapshot each at 10:00; 20%/20% of 3 gives 1/1/1.
    # The valid user's sign-up (09:00) is before the train user's snapshot: its row is dropped.
    _week_is_refused(
        r"goal 'week': the train split has 0 rows and 0 positives; both classes are "
        r"needed: 1 of its 1 rows were dropped as their snapshots are at or after the valid "
        r"split's first sign-up \(2024-01-01 09:00:00\), when 1 of its 1 users signed up too$"
    )
