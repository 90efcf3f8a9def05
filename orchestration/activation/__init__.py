"""Activation: next best actions written back to Intercom (asset group `activation`)."""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the activation stage."""
    return dg.Definitions()
