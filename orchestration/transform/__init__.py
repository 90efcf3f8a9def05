"""Transformation: the dbt project as Dagster assets (asset group `transform`)."""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the transformation stage."""
    return dg.Definitions()
