"""Stripe's own object samples, the base of every Stripe object the sandbox renders."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "vendor_specs" / "stripe_objects.json"

# Fields the 2025-03-31 API version removed from invoices; the sample still carries them.
REMOVED_INVOICE_FIELDS = ("subscription", "paid", "charge")
# The template of invoices served in the shape of the versions before 2025-03-31: the removed
# fields at the top level and no `parent`. A stored object names it in `_template`.
LEGACY_INVOICE = "invoice_legacy"


@cache
def _load() -> dict[str, dict]:
    return json.loads(SAMPLES.read_text())


def templates() -> dict[str, dict]:
    """The samples by object name (`customer`, `invoice`, ...), adjusted to the API version.

    `invoice_legacy` is the invoice as versions before 2025-03-31 gave it.
    """
    samples = json.loads(json.dumps(_load()))
    legacy = {k: v for k, v in samples["invoice"].items() if k != "parent"}
    samples[LEGACY_INVOICE] = legacy | dict.fromkeys(REMOVED_INVOICE_FIELDS)
    for name in REMOVED_INVOICE_FIELDS:
        samples["invoice"].pop(name, None)
    # Refunds are not embedded in charges unless expanded.
    samples["charge"].pop("refunds", None)
    return samples
