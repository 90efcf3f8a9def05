"""Every value is checked against its Intercom type before it is sent (FAILURE_MODES 12, 13)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from orchestration.activation.values import (
    ATTRIBUTES,
    InvalidAttributeValue,
    check_attribute_name,
    validate_value,
)


def test_the_project_attributes_have_the_issue_types_and_valid_names():
    assert [(a.name, a.data_type) for a in ATTRIBUTES] == [
        ("nb_next_action", "string"),
        ("nb_next_action_label", "string"),
        ("nb_conversion_score", "float"),
        ("nb_updated_at", "date"),
    ]
    for spec in ATTRIBUTES:
        assert check_attribute_name(spec.name) == spec.name


@pytest.mark.parametrize("name", ["nb.action", "nb$action", "", "1st", "has space"])
def test_names_with_dots_dollars_or_odd_characters_are_refused(name):
    with pytest.raises(InvalidAttributeValue):
        check_attribute_name(name)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (math.nan, "integer"),
        ("12 seats", "integer"),
        (12.5, "integer"),
        (math.inf, "float"),
        (math.nan, "float"),
        ("0.4", "float"),
        (True, "float"),
        (True, "integer"),
        ("x" * 256, "string"),
        ({"a": 1}, "string"),
        (["a"], "string"),
        (3, "string"),
        (1712000000000, "date"),
        ("2024-04-01", "date"),
        (-5, "datetime"),
        ("yes", "boolean"),
    ],
)
def test_values_the_type_would_reject_are_refused_with_a_reason(value, data_type):
    with pytest.raises(InvalidAttributeValue) as raised:
        validate_value(value, data_type)
    assert str(raised.value)


def test_accepted_values_are_sent_in_intercom_form():
    assert validate_value("x" * 255, "string") == "x" * 255
    assert validate_value(3, "float") == 3.0
    assert validate_value(12.0, "integer") == 12
    assert validate_value(False, "boolean") is False
    assert validate_value(None, "float") is None
    # 2024-04-01 00:00 UTC is 1711929600 Unix seconds (19814 days after the epoch * 86400).
    assert validate_value(date(2024, 4, 1), "date") == 19814 * 86400 == 1711929600
    assert validate_value(datetime(2024, 4, 1, 13, 5, tzinfo=UTC), "date") == 1711929600
    assert validate_value(datetime(2024, 4, 1, 0, 0, 7, tzinfo=UTC), "datetime") == 1711929607


def test_numbers_from_decimal_columns_and_numpy_are_sent_as_plain_json_numbers():
    from decimal import Decimal

    import numpy as np

    assert validate_value(Decimal("0.25"), "float") == 0.25
    assert type(validate_value(Decimal("0.25"), "float")) is float
    assert validate_value(np.float32(0.5), "float") == 0.5
    assert type(validate_value(np.int64(7), "integer")) is int
    with pytest.raises(InvalidAttributeValue):
        validate_value(Decimal("NaN"), "float")


@pytest.mark.parametrize(
    ("value", "found"),
    [
        # "Choose" is 6 characters: \r is the 7th, \n the 8th; "delivery" ends at the 16th and
        # the bell is the 17th of 17.
        (
            "Choose\r\ndelivery\x07",
            "3 line-break or control characters (the first U+000D at character 7 of 17)",
        ),
        ("Invite\tteam", "1 line-break or control character (U+0009 at character 7 of 11)"),
        ("a\x00", "1 line-break or control character (U+0000 at character 2 of 2)"),
        # Unicode's line and paragraph separators, NEL and a zero-width space.
        (
            "one\u2028two\u2029",
            "2 line-break or control characters (the first U+2028 at character 4 of 8)",
        ),
        ("\x85next", "1 line-break or control character (U+0085 at character 1 of 5)"),
        ("zero\u200bwidth", "1 line-break or control character (U+200B at character 5 of 10)"),
    ],
)
def test_strings_with_line_breaks_or_control_characters_are_refused_and_counted(value, found):
    with pytest.raises(InvalidAttributeValue) as raised:
        validate_value(value, "string")
    assert str(raised.value) == f"string holds {found}; Intercom shows one line of text"


def test_one_line_text_in_any_script_is_sent_as_is():
    for value in ("Choose delivery", "Café: 10 € — ok", "招待する", "Launch 🚀", ""):
        assert validate_value(value, "string") == value


def test_the_write_back_refuses_what_the_catalogue_keeps_out_of_labels():
    from ml.catalogue import UNSAFE_CATEGORIES as CATALOGUE_CATEGORIES
    from orchestration.activation.values import UNSAFE_CATEGORIES

    assert UNSAFE_CATEGORIES == CATALOGUE_CATEGORIES
    # The categories docs/activation.md names: control, format, line and paragraph separators.
    assert set(UNSAFE_CATEGORIES) == {"Cc", "Cf", "Zl", "Zp"}
