"""Ingestion: Intercom and Stripe into the DuckDB raw layer (asset group `ingest`)."""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the ingestion stage."""
    return dg.Definitions()
