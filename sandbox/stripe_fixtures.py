"""Stripe's own object samples, the base of every Stripe object the sandbox renders."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "vendor_specs" / "stripe_objects.json"

# Fields the 2025-03-31 API version removed from invoices; the sample still carries them.
REMOVED_INVOICE_FIELDS = ("subscription", "paid", "charge")


@cache
def _load() -> dict[str, dict]:
    return json.loads(SAMPLES.read_text())


def templates() -> dict[str, dict]:
    """The samples by object name (`customer`, `invoice`, ...), adjusted to the API version."""
    samples = json.loads(json.dumps(_load()))
    for name in REMOVED_INVOICE_FIELDS:
        samples["invoice"].pop(name, None)
    # Refunds are not embedded in charges unless expanded.
    samples["charge"].pop("refunds", None)
    return samples
