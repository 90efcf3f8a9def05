"""Runs scoped to a set of contacts: how the live loop tells every stage "just these users".

The sensor starts a run of the `live_update` job with the run tag `nextbest/contact_ids`, a
JSON list of Intercom contact ids. Any asset can read it with `contact_scope(context.run.tags)`
and restrict its work to those contacts; without the tag a run covers everyone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

CONTACT_IDS_TAG = "nextbest/contact_ids"
"""Run tag holding the JSON list of contact ids a run is scoped to."""

TRIGGER_TAG = "nextbest/trigger"
"""Run tag saying why the sensor started the run (`action_completed`, `converted` or both)."""


def scope_tags(contact_ids: Iterable[str]) -> dict[str, str]:
    """Run tags that scope a run to these contacts (sorted and de-duplicated)."""
    return {CONTACT_IDS_TAG: json.dumps(sorted(set(contact_ids)), separators=(",", ":"))}


def contact_scope(tags: Mapping[str, str] | None) -> list[str] | None:
    """The contacts a run is scoped to, or None when it covers everyone.

    Raises:
        ValueError: The tag is present but is not a JSON list of strings.
    """
    if not tags or CONTACT_IDS_TAG not in tags:
        return None
    raw = tags[CONTACT_IDS_TAG]
    try:
        ids = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"run tag {CONTACT_IDS_TAG} is not JSON: {raw[:100]!r}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"run tag {CONTACT_IDS_TAG} is not a list of contact ids: {raw[:100]!r}")
    return ids
