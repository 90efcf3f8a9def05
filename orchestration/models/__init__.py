"""Models: training, scoring and recommendations as Dagster assets (asset group `ml`)."""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the model stage."""
    return dg.Definitions()
