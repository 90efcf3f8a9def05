"""The action catalogue: events a user can be nudged to do, each with a label.

By default it comes from the data: events that a useful share of converters did before they
paid. The conversion event itself (the event that marks paying, such as `payment_done`) is
never an action; a setting names it, or it is detected as the event most converters do at
the time of their first payment. A YAML file can override the derived catalogue.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import pandas as pd

from ml.intercom_text import STRING_MAX_CHARS, is_unsafe_char
from ml.yaml_file import read_yaml

log = logging.getLogger(__name__)

# An event within this many seconds of the first payment counts as "done at payment time";
# payments and the app's own "paid" event are written by different systems a moment apart.
PAYMENT_TIME_TOLERANCE_S = 120
# Below this share of converters, no event is taken to mark the payment (Stripe holds it).
CONVERSION_EVENT_MIN_SHARE = 0.5
# The event that marks paying is rare among users who never paid (refunds aside); funnel
# steps next to the payment, such as the cart, are not.
CONVERSION_EVENT_MAX_NON_PAYER_SHARE = 0.1
# Labels are written to the Intercom attribute `nb_next_action_label`, a string attribute.
LABEL_MAX_CHARS = STRING_MAX_CHARS
OVERRIDE_KEYS = ("actions", "labels", "exclude")
ELLIPSIS = "\u2026"


class CatalogueError(ValueError):
    """A catalogue or conversion event that cannot be used, with the reason."""


@dataclass(frozen=True)
class Action:
    """One action of the catalogue.

    Attributes:
        event: The event name in the journeys.
        label: What people read ("Choose delivery").
        converter_share: Share of converters who did it before paying (None when declared).
    """

    event: str
    label: str
    converter_share: float | None = None


@dataclass(frozen=True)
class Catalogue:
    """The actions, and the conversion event that is never one of them."""

    actions: tuple[Action, ...]
    conversion_event: str | None
    source: str

    @property
    def events(self) -> list[str]:
        """Action event names, in catalogue order."""
        return [action.event for action in self.actions]

    def label(self, event: str) -> str:
        """The label of an action."""
        return next(action.label for action in self.actions if action.event == event)


def humanize(event: str) -> str:
    """A readable label from an event name: `delivery_choice` -> `Delivery choice`."""
    words = re.sub(r"[_\-.:/]+", " ", event).strip()
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", words).lower()
    return words[:1].upper() + words[1:] if words else event


def unwritable_reason(event: str) -> str | None:
    """Why an event name cannot be an action, or None when it can.

    The action's event name is written as is to the Intercom attribute `nb_next_action`, a
    string of at most 255 characters that message rules compare with a typed value: a longer
    name would fail every contact's write, and a control character could not be typed.
    """
    if not event.strip():
        return "the name is blank"
    if len(event) > LABEL_MAX_CHARS:
        return f"the name of {len(event)} characters is over Intercom's {LABEL_MAX_CHARS}"
    if any(is_unsafe_char(char) for char in event):
        return "the name holds a line break or control character"
    return None


def derived_label(event: str) -> str:
    """The label made from an event name, fit for `nb_next_action_label`.

    Runs of line breaks and control characters become one space, the ends are trimmed, and a
    label over 255 characters is cut to 254 and ends with an ellipsis, so the cut shows.
    """
    label = "".join(
        " " if unsafe else "".join(chars)
        for unsafe, chars in groupby(humanize(event), is_unsafe_char)
    ).strip()
    if len(label) > LABEL_MAX_CHARS:
        label = label[: LABEL_MAX_CHARS - 1].rstrip() + ELLIPSIS
    return label


def _log_changed_labels(events: list[str], where: str) -> None:
    changed = [event for event in events if derived_label(event) != humanize(event)]
    if changed:
        log.warning(
            "%s: %d of %d labels made from event names were changed to fit "
            "nb_next_action_label (line breaks or control characters replaced, cut to %d "
            "characters), e.g. for %r",
            where,
            len(changed),
            len(events),
            LABEL_MAX_CHARS,
            changed[0][:60],
        )


def detect_conversion_event(
    journeys: pd.DataFrame, labels: pd.DataFrame, configured: str | None = None
) -> tuple[str | None, float]:
    """Find the event that marks paying.

    Args:
        journeys: Events: `user_id`, `event_name`, `occurred_at`.
        labels: Per user: `user_id`, `first_payment_at`.
        configured: A name from settings; used as is when it occurs in the journeys.

    Returns:
        The event name (None when no event marks payments) and the share of converters who did
        it within `PAYMENT_TIME_TOLERANCE_S` of their first payment.

    Raises:
        CatalogueError: The configured name never occurs in the journeys.
    """
    payers = labels.loc[labels["first_payment_at"].notna(), ["user_id", "first_payment_at"]]
    events = journeys[["user_id", "event_name", "occurred_at"]].merge(payers, on="user_id")
    gap = (events["occurred_at"] - events["first_payment_at"]).abs().dt.total_seconds()
    # Per payer, the event nearest to the payment (within the tolerance): the app's own
    # "paid" event sits on it, the checkout steps before it do not.
    near = events.assign(gap=gap).loc[gap <= PAYMENT_TIME_TOLERANCE_S]
    nearest = near.sort_values(["user_id", "gap"], kind="stable").drop_duplicates("user_id")
    shares = nearest.groupby("event_name")["user_id"].nunique() / max(len(payers), 1)
    if configured is not None:
        if not (journeys["event_name"] == configured).any():
            raise CatalogueError(f"conversion event {configured!r} never occurs in the journeys")
        return configured, float(shares.get(configured, 0.0))
    if shares.empty:
        return None, 0.0
    non_payers = set(labels["user_id"]) - set(payers["user_id"])
    done_by_non_payers = journeys.loc[journeys["user_id"].isin(non_payers)].groupby("event_name")[
        "user_id"
    ].nunique() / max(len(non_payers), 1)
    rare = (
        done_by_non_payers.reindex(shares.index).fillna(0) <= CONVERSION_EVENT_MAX_NON_PAYER_SHARE
    )
    shares = shares[rare]
    if shares.empty:
        return None, 0.0
    best = str(shares.idxmax())
    share = float(shares.max())
    if share < CONVERSION_EVENT_MIN_SHARE:
        log.info("no conversion event: best candidate %s at %.1f%% of payers", best, 100 * share)
        return None, share
    return best, share


def derive_catalogue(
    journeys: pd.DataFrame,
    labels: pd.DataFrame,
    conversion_event: str | None,
    min_share: float = 0.05,
) -> Catalogue:
    """Derive the actions from what converters did before paying.

    Args:
        journeys: Events: `user_id`, `event_name`, `occurred_at`.
        labels: Per user: `user_id`, `first_payment_at`.
        conversion_event: Never an action.
        min_share: Share of converters who must have done an event before paying.

    Returns:
        The catalogue, actions ordered by share of converters (highest first).

    Raises:
        CatalogueError: No converters, or no event reaches `min_share`.
    """
    payers = labels.loc[labels["first_payment_at"].notna(), ["user_id", "first_payment_at"]]
    if payers.empty:
        raise CatalogueError("no converters in the data: the catalogue cannot be derived")
    events = journeys[["user_id", "event_name", "occurred_at"]].merge(payers, on="user_id")
    before = events.loc[events["occurred_at"] < events["first_payment_at"]]
    shares = before.groupby("event_name")["user_id"].nunique() / len(payers)
    if conversion_event is not None:
        shares = shares.drop(conversion_event, errors="ignore")
    reasons = {str(name): unwritable_reason(str(name)) for name in shares.index}
    unwritable = {name: reason for name, reason in reasons.items() if reason is not None}
    if unwritable:
        log.warning(
            "catalogue: %d of %d events left out: their names cannot be written to nb_next_action",
            len(unwritable),
            len(reasons),
        )
        for name, reason in unwritable.items():
            log.warning("catalogue: event %r left out: %s", name[:60], reason)
        shares = shares.drop(list(unwritable))
    kept = shares[shares >= min_share].sort_values(ascending=False, kind="stable")
    if kept.empty:
        raise CatalogueError(
            f"no event was done before paying by {min_share:.0%} of {len(payers)} converters"
        )
    actions = tuple(
        Action(event=str(name), label=derived_label(str(name)), converter_share=round(float(s), 4))
        for name, s in kept.items()
    )
    _log_changed_labels([action.event for action in actions], "catalogue")
    log.info(
        "catalogue: %d actions from %d converters (dropped %d events under %.0f%%)",
        len(actions),
        len(payers),
        len(shares) - len(kept),
        100 * min_share,
    )
    return Catalogue(actions=actions, conversion_event=conversion_event, source="derived")


def _label(value: object, where: str) -> str:
    """A label as written to Intercom: one line of text, trimmed, 1 to 255 characters."""
    if not isinstance(value, str):
        raise CatalogueError(f"{where}: label {value!r} is not text (quote it)")
    label = value.strip()
    if not label:
        raise CatalogueError(f"{where}: label is empty")
    if any(is_unsafe_char(char) for char in label):
        raise CatalogueError(f"{where}: label {label!r} holds a line break or control character")
    if len(label) > LABEL_MAX_CHARS:
        raise CatalogueError(
            f"{where}: label of {len(label)} characters is over Intercom's {LABEL_MAX_CHARS}"
        )
    return label


def apply_override(
    catalogue: Catalogue, path: Path, known_events: Collection[str] | None = None
) -> Catalogue:
    """Apply a YAML override to a catalogue.

    The file may hold `actions` (a list of `{event, label}`; it replaces the derived list),
    `labels` (event -> label for derived actions) and `exclude` (events to drop). A label is
    one line of at most 255 characters (Intercom's limit on the attribute it is written to).

    Args:
        catalogue: The derived catalogue.
        path: The YAML file.
        known_events: Every event name in the journeys; when given, an event the file names
            that never occurs is refused (most likely a misspelling).

    Raises:
        CatalogueError: The file is unreadable or malformed, names an unknown event, lists an
            event twice, holds a bad label, or lists the conversion event as an action.
    """
    document = read_yaml(Path(path), CatalogueError)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CatalogueError(f"{path}: expected a mapping with actions, labels or exclude")
    unknown = sorted(str(key) for key in document if key not in OVERRIDE_KEYS)
    if unknown:
        raise CatalogueError(f"{path}: unknown keys {unknown}; known: {list(OVERRIDE_KEYS)}")
    for key, kind in (("actions", list), ("labels", dict), ("exclude", list)):
        if document.get(key) is not None and not isinstance(document[key], kind):
            raise CatalogueError(
                f"{path}: {key!r} must be a {'list' if kind is list else 'mapping'}, "
                f"got {type(document[key]).__name__}"
            )

    def check_known(event: str, where: str) -> None:
        if known_events is not None and event not in known_events:
            raise CatalogueError(f"{where}: event {event!r} never occurs in the journeys")

    actions = list(catalogue.actions)
    if "actions" in document:
        actions = []
        for index, item in enumerate(document["actions"] or []):
            where = f"{path}: action #{index + 1}"
            if not isinstance(item, dict) or not item.get("event"):
                raise CatalogueError(f"{where} needs an 'event'")
            extra = sorted(str(key) for key in item if key not in ("event", "label"))
            if extra:
                raise CatalogueError(f"{where}: unknown keys {extra}; known: ['event', 'label']")
            event = str(item["event"])
            check_known(event, where)
            reason = unwritable_reason(event)
            if reason is not None:
                raise CatalogueError(
                    f"{where}: event {event[:60]!r} cannot be an action: {reason} "
                    "(it is written to nb_next_action)"
                )
            if event in {action.event for action in actions}:
                raise CatalogueError(f"{where}: event {event!r} is listed twice")
            label = item.get("label")
            label = derived_label(event) if label is None else _label(label, where)
            actions.append(Action(event=event, label=label))
        unlabelled = [str(i["event"]) for i in document["actions"] or [] if i.get("label") is None]
        _log_changed_labels(unlabelled, str(path))
    labels = {}
    for event, label in (document.get("labels") or {}).items():
        check_known(str(event), f"{path}: labels")
        labels[str(event)] = _label(label, f"{path}: labels: {event!r}")
    exclude = {str(event) for event in document.get("exclude") or []}
    for event in sorted(exclude):
        check_known(event, f"{path}: exclude")
    actions = [
        Action(a.event, labels.get(a.event, a.label), a.converter_share)
        for a in actions
        if a.event not in exclude
    ]
    if catalogue.conversion_event in {a.event for a in actions}:
        raise CatalogueError(
            f"{path}: {catalogue.conversion_event!r} is the conversion event, never an action"
        )
    if not actions:
        raise CatalogueError(f"{path}: the override leaves no actions")
    return Catalogue(tuple(actions), catalogue.conversion_event, source=f"override:{path}")


def build_catalogue(
    journeys: pd.DataFrame,
    labels: pd.DataFrame,
    conversion_event: str | None = None,
    override: Path | None = None,
    min_share: float = 0.05,
) -> Catalogue:
    """Detect the conversion event, derive the catalogue and apply the override if any."""
    event, share = detect_conversion_event(journeys, labels, conversion_event)
    log.info("conversion event: %s (%.1f%% of converters at payment time)", event, 100 * share)
    catalogue = derive_catalogue(journeys, labels, event, min_share)
    if override is not None:
        # A set path that is missing is refused (read_yaml), never silently skipped.
        known = set(journeys["event_name"].dropna().astype(str))
        catalogue = apply_override(catalogue, Path(override), known)
    return catalogue
