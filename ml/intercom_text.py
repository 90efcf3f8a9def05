"""What Intercom accepts in a string attribute, shared by the catalogue and the write-back.

The catalogue decides which event names and labels may become `nb_next_action` and
`nb_next_action_label`; the write-back checks every value before it is sent. Both read the
rules here, so an action the catalogue keeps is never one the write-back refuses.
"""

from __future__ import annotations

import unicodedata

STRING_MAX_CHARS = 255
"""Intercom's limit on a string attribute value."""

# A string attribute is one line of text in Intercom's UI and in message rules, which compare
# it with a typed value: control and format characters, line and paragraph separators could
# not be typed or shown.
UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def is_unsafe_char(char: str) -> bool:
    """True for a character a one-line string attribute must not hold."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES
